"""ToyWorld calibration: the floor / oracle texts, the normalised score, the command, and the committed weights."""

import json
from pathlib import Path

import pytest

from hifilight.toyworld.calibrate import ROWS, normalised, prompt_object, prompt_text, summarize_rows
from hifilight.toyworld.dataset import PROMPTS, SUBJECTS, VALIDATION_SUBJECTS
from hifilight.toyworld.scenes import ToyObject

STAR = SUBJECTS["blue_star_yellow_dots"]


def test_floor_names_the_class_word_only_and_the_oracle_the_whole_object():
    assert prompt_text(PROMPTS[0], STAR, "floor") == "a star on the beach"
    assert prompt_text(PROMPTS[0], STAR, "oracle") == "a blue star with yellow dots on the beach"
    # a recolour prompt asks for the recoloured subject, and the oracle says so once
    assert prompt_text(PROMPTS[8], STAR, "oracle") == "a red star with yellow dots"
    assert prompt_text(PROMPTS[8], STAR, "floor") == "a red star"
    assert prompt_object(STAR, "a red star") == ToyObject("star", "red", "dotted", "yellow")


def test_normalised_is_zero_at_the_floor_one_at_the_oracle_and_undefined_when_they_meet():
    assert normalised(0.1, 0.1, 0.6) == 0.0 and normalised(0.6, 0.1, 0.6) == 1.0
    assert normalised(0.35, 0.1, 0.6) == pytest.approx(0.5)
    assert normalised(0.3, 0.2, 0.2) is None


def test_rows_are_means_over_their_cells():
    keys = ["identity", "attributes", "confidence", "toydino", "prompt"]
    attrs = ["match_shape", "match_color", "match_pattern", "match_pattern_color"]
    cells = [{"row": "floor", **dict.fromkeys(keys + attrs, v)} for v in (0.0, 0.5)]
    rows = summarize_rows(cells)
    assert list(rows) == ["floor"] and rows["floor"]["identity"] == 0.25 and rows["floor"]["cells"] == 2
    assert set(ROWS) == {"floor", "oracle", "renders", "vae_renders"}


def test_calibrate_command_refuses_bad_flags_and_an_existing_output_before_any_work(tmp_path):
    from hifilight.errors import HifiError
    from hifilight.toyworld.calibration_report import CalibrationArgs

    with pytest.raises(HifiError, match="--split must be one of val, test"):
        CalibrationArgs(split="train").check()
    out = tmp_path / "cal.json"
    out.write_text("{}")
    with pytest.raises(HifiError, match="already exists"):
        CalibrationArgs(out=out).check()
    with pytest.raises(HifiError, match="--prompts must be indices"):
        CalibrationArgs(prompts=[10]).check()
    with pytest.raises(HifiError, match="--subjects: green_star_white_checks not in the test split"):
        CalibrationArgs(subjects=["green_star_white_checks"]).check()
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "green_star_white_checks.png").write_bytes(b"mine")
    with pytest.raises(HifiError, match="already exists"):
        CalibrationArgs(split="val", subjects=["green_star_white_checks"], pictures=tmp_path / "pics").check()
    assert CalibrationArgs(split="val", subjects=["green_star_white_checks"]).chosen() == {
        "green_star_white_checks": VALIDATION_SUBJECTS["green_star_white_checks"]
    }


def test_the_picture_puts_photos_then_one_line_per_row_with_one_image_per_prompt():
    from PIL import Image

    from hifilight.toyworld.calibrate import DREAMBOOTH_OWN, FLOOR, ORACLE, RENDERS, Cell, picture

    def solid(value):
        return Image.new("RGB", (64, 64), (value, value, value))

    cells = [Cell(row, "s", i, "p", [solid(10 * k + i + 1), solid(200)]) for k, row in enumerate((FLOOR, ORACLE))
             for i in range(3)]  # fmt: skip
    cells += [Cell(RENDERS, "s", 0, "p", [solid(250)]), Cell(FLOOR, "other", 0, "p", [solid(99)])]
    cells.append(Cell(DREAMBOOTH_OWN, "s", -1, "p", [solid(70), solid(71), solid(72), solid(73)]))
    image = picture(cells, [solid(90), solid(91)], "s")
    assert image.size == (150 + 4 * 64, 4 * 64)  # photos, class word, oracle, own prompt; the renders row left out
    centre = [[image.getpixel((150 + 64 * col + 32, 64 * line + 32))[0] for col in range(4)] for line in range(4)]
    assert centre == [[90, 91, 255, 255], [1, 2, 3, 255], [11, 12, 13, 255], [70, 71, 72, 73]]


# --- the committed weights -----------------------------------------------------------------------------------
# Measured by `hifilight toyworld calibrate --split test --images_per_prompt 1` on the committed ToySD (8 test
# subjects x 8 background prompts x 1 image; the weights continued 4000 steps, see toysd/training.json): floor
# identity 0.000, oracle identity 0.234 (attributes 0.742, shape 0.375; the earlier weights 0.203 / 0.723 / 0.266),
# background following 1.000, renders 0.906, through the VAE 0.797; classifier_toysd on fresh renders shape 0.938,
# colour 1.0, pattern 0.984, pattern colour 0.986, background 1.0; ToySAM mean IoU 0.965. The bounds sit just under
# these; the oracle's identity is still far from the 0.5 the instrument needs (issue "ToyWorld as a real instrument").
BOUNDS = {"floor_identity_max": 0.05, "oracle_identity_min": 0.2, "oracle_attributes_min": 0.7,
          "background_min": 0.95, "vae_identity_min": 0.7}  # fmt: skip


def test_committed_toysd_calibration_stays_within_its_measured_bounds(tmp_path):
    from hifilight.toyworld.calibration_report import CalibrationArgs, run

    out = tmp_path / "cal.json"
    run(CalibrationArgs(split="test", out=out, images_per_prompt=1))
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["split"] == "test" and rows["oracle"]["cells"] == 64
    assert rows["floor"]["identity"] <= BOUNDS["floor_identity_max"]
    assert rows["oracle"]["identity"] >= BOUNDS["oracle_identity_min"]
    assert rows["oracle"]["attributes"] >= BOUNDS["oracle_attributes_min"]
    assert min(rows["floor"]["prompt"], rows["oracle"]["prompt"]) >= BOUNDS["background_min"]
    assert rows["vae_renders"]["identity"] >= BOUNDS["vae_identity_min"]
    assert rows["renders"]["identity"] >= rows["vae_renders"]["identity"] > rows["oracle"]["identity"]
    perception = result["perception"]
    assert perception["toysam_mean_iou"] >= 0.95
    assert min(perception["classifier_toysd"].values()) >= 0.92


def test_validation_subjects_calibrate_too_and_get_their_pictures(tmp_path):
    from PIL import Image

    from hifilight.toyworld.calibration_report import CalibrationArgs, run

    name = "green_star_white_checks"
    args = CalibrationArgs(split="val", subjects=[name], prompts=[0, 1], images_per_prompt=1, pictures=tmp_path)
    result = run(args, log=lambda line: None)
    assert {c["subject"] for c in result["cells"]} == {name} and len(result["cells"]) == 2 * len(ROWS)
    assert result["subjects"] == [name]
    # the 5 source photos, the class word and the text oracle, each on its own line
    assert Image.open(tmp_path / f"{name}.png").size == (150 + 5 * 64, 3 * 64)


@pytest.mark.numerical
def test_cached_base_model_images_equal_fresh_ones_and_are_not_made_again(tiny, tmp_path, monkeypatch):
    import numpy as np

    import hifilight.sampling.generate as generation
    from hifilight.toyworld.calibrate import text_images

    texts = ["a blue star on the beach", "a star in the snow"]
    fresh = text_images(tiny, texts, 2, 0, 2, 5.0, 4)
    cached = text_images(tiny, texts[:1], 2, 0, 2, 5.0, 4, cache=tmp_path)  # one text first: the rest later
    cached = text_images(tiny, texts, 2, 0, 2, 5.0, 4, cache=tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 4
    # the cached images of the first text were made in a batch of 2, the fresh ones in a batch of 4: other BLAS /
    # oneDNN kernels, so a pixel on a rounding edge may land one level apart (seen with OMP_NUM_THREADS=1)
    diffs = [
        np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max()
        for f, c in zip(fresh, cached, strict=True)
        for a, b in zip(f, c, strict=True)
    ]
    assert max(diffs) <= 1, diffs
    other = np.abs(np.asarray(fresh[0][0]).astype(int) - np.asarray(cached[1][0]).astype(int)).max()
    assert other > 1  # the comparison can fail: another text's image is far outside the bound
    monkeypatch.setattr(generation, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert len(text_images(tiny, texts, 2, 0, 2, 5.0, 4, cache=tmp_path)) == 2


def test_the_fine_tuning_ceiling_fits_dreambooth_once_per_subject_and_scores_its_own_prompt(tmp_path, monkeypatch):
    from hifilight.models import load_components
    from hifilight.toyworld.calibrate import DREAMBOOTH, DREAMBOOTH_OWN, calibrate
    from hifilight.toyworld.ceiling import Ceiling

    name = "green_star_white_checks"
    ceiling = Ceiling(
        Path(__file__).resolve().parents[2] / "configs" / "toyworld_dreambooth.yaml",
        ("--model.max_steps", "2", "--model.num_class_images", "2", "--model.class_steps", "2"),
        tmp_path / "fits",
    )
    comps = load_components("toysd")
    subjects = {name: VALIDATION_SUBJECTS[name]}
    result = calibrate(comps, subjects, prompts=[0], n=1, steps=2, ceiling=ceiling)
    rows = result["rows"]
    assert rows[DREAMBOOTH]["cells"] == 1 and rows[DREAMBOOTH_OWN]["cells"] == 1
    assert rows[DREAMBOOTH_OWN]["prompt"] is None and rows[DREAMBOOTH]["prompt"] is not None
    own = next(c for c in result["cells"] if c["row"] == DREAMBOOTH_OWN)
    assert own["prompt_index"] == -1 and own["prompt"] is None  # no prompt measure for it
    assert (tmp_path / "fits" / comps.fingerprint() / name / "model_index.json").is_file()
    assert len(list((tmp_path / "fits" / comps.fingerprint() / "class_images" / "star").glob("*.png"))) == 2

    import hifilight.training.fit_cli as fit_cli

    monkeypatch.setattr(fit_cli, "fit", lambda *a, **k: pytest.fail("fitted again"))
    again = calibrate(comps, subjects, prompts=[0], n=1, steps=2, ceiling=ceiling)
    assert again["rows"][DREAMBOOTH] == rows[DREAMBOOTH]  # the cached model gives the same images


def test_the_ceilings_setting_comes_from_a_validation_record_on_these_weights(tiny, tmp_path):
    import json

    from hifilight.errors import HifiError
    from hifilight.toyworld.ceiling import ceiling_setting

    record = {"split": "val", "weights": tiny.fingerprint(), "choice": {"dreambooth": ["--model.max_steps", "400"]}}
    (tmp_path / "t.json").write_text(json.dumps(record))
    assert ceiling_setting(tiny, tmp_path / "t.json", None, tmp_path).args == ("--model.max_steps", "400")
    assert ceiling_setting(tiny, tmp_path / "t.json", ["--model.max_steps", "9"], tmp_path).args[1] == "9"
    (tmp_path / "other.json").write_text(json.dumps(record | {"weights": "0123456789abcdef"}))
    with pytest.raises(HifiError, match="chosen on weights 0123456789abcdef, not these"):
        ceiling_setting(tiny, tmp_path / "other.json", None, tmp_path)
    (tmp_path / "test.json").write_text(json.dumps(record | {"split": "test"}))
    with pytest.raises(HifiError, match="not a validation record"):
        ceiling_setting(tiny, tmp_path / "test.json", None, tmp_path)
