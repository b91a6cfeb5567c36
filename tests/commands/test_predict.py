"""`hifilight predict`: images, grid and manifest, reference guidance, every subject kind, and its refusals."""

import json
from pathlib import Path

import pytest
from conftest import EXAMPLE_SUBJECT, sd_pipeline
from PIL import Image

from hifilight.cli import main


def test_predict_writes_images_grid_and_manifest(fitted, tmp_path):
    out = tmp_path / "pred"
    args = [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {} on the beach", "a dog in the snow"]',
        "--num_images",
        "2",
        "--steps",
        "3",
        "--out_dir",
        str(out),
    ]
    assert main(args) == 0
    manifest = json.loads((out / "predict.json").read_text())
    files = [item["file"] for item in manifest["images"]]
    assert len(files) == 4 and [i["seed"] for i in manifest["images"]] == [0, 1, 0, 1]
    assert manifest["images"][0]["text"] == "a dog on the beach"
    assert manifest["stepwise"] is True  # the artifact has c_s^t, so Eq. (7) is used by default
    for name in files:
        assert Image.open(out / name).size == (32, 32)
    assert Image.open(out / "grid.png").size == (64, 64)
    # same seed, same prompt -> same image; a second run refuses to overwrite, then overwrites when asked
    first = (out / files[0]).read_bytes()
    assert main(args) == 2
    assert main([*args, "--overwrite", "true"]) == 0
    assert (out / files[0]).read_bytes() == first


def test_artifact_from_another_base_model_is_refused(fitted, tmp_path, capsys):
    from hifilight.models.tiny import build_tiny

    sd_pipeline(**build_tiny(seed=7)).save_pretrained(tmp_path / "other")
    args = [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {}"]',
        "--steps",
        "2",
        "--model.pretrained",
        str(tmp_path / "other"),
        "--out_dir",
        str(tmp_path / "o"),
    ]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "text encoder differs" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _reference_args(fitted, out, *extra):

    return [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {} on the beach"]',
        "--num_images",
        "2",
        "--steps",
        "3",
        "--out_dir",
        str(out),
        "--reference_guidance",
        "true",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.masks",
        "grabcut",
        "--reference.dino_model",
        "tiny",
        "--reference.generated_masks",
        "none",
        "--reference.guide.start",
        "2",
        "--reference.guide.end",
        "1",
        "--reference.guide.inner_steps",
        "2",
        *extra,
    ]


def test_predict_with_reference_guidance(fitted, tmp_path, capsys):
    out = tmp_path / "ref"
    assert main(_reference_args(fitted, out, "--save_intermediates", "true")) == 0
    assert "reference caption: 'a photo of a dog'" in capsys.readouterr().err
    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["reference_guidance"]["guide"]["start"] == 2
    sources = {p.name for p in (Path(__file__).resolve().parents[2] / "hifilight/assets/example_subject").glob("*.jpg")}
    for item in manifest["images"]:
        stem = item["file"][:-4]
        assert item["skipped"] is None and item["reference"] in sources
        assert item["eq10_loss_after"] < item["eq10_loss_before"]
        assert set(item["alignment"]) == {"scale", "angle_deg", "tx", "ty", "loss", "iou"}
        assert item["seconds"]["guided"] > 0 and item["seconds"]["inversion"] > 0
        for kind in ("g1", "mask_g", "reference", "reference_aligned", "mask_r_aligned"):
            assert Image.open(out / f"{stem}_{kind}.png").size == (32, 32)
        assert (out / f"{stem}_g1.png").read_bytes() != (out / item["file"]).read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference.guide.start", "1", "--reference.guide.end", "2"], "need 1 <= end <= start <= --steps"),
        (["--reference.guide.start", "9"], "need 1 <= end <= start <= --steps (3)"),
        (["--guidance", "1"], "guidance 1 ignores"),
        (["--data.subject_dir", "/nowhere"], "no such folder"),
        (["--reference.generated_masks", "files"], "unknown provider for generated images"),
    ],
)
def test_reference_guidance_bad_input(fitted, tmp_path, capsys, extra, message):
    assert main(_reference_args(fitted, tmp_path / "o", *extra)) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and message in err[0] and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_predict_with_textual_inversion_and_dreambooth_subjects(tmp_path):

    common = [
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "logs"),
        "--model.max_steps",
        "1",
    ]
    ti, db = tmp_path / "ti.safetensors", tmp_path / "db"
    assert main(["fit", "--method", "textual_inversion", *common, "--out", str(ti)]) == 0
    assert (
        main(
            [
                "fit",
                "--method",
                "dreambooth",
                *common,
                "--model.num_class_images",
                "1",
                "--model.class_steps",
                "2",
                "--out",
                str(db),
            ]
        )
        == 0
    )
    for subject, word in ((ti, "<sks> dog"), (db, "sks dog")):
        out = tmp_path / f"pred_{subject.stem}"
        args = [
            "predict",
            "--subject",
            str(subject),
            "--prompts",
            '["a {} on the beach"]',
            "--steps",
            "2",
            "--out_dir",
            str(out),
        ]
        assert main(args) == 0
        manifest = json.loads((out / "predict.json").read_text())
        assert manifest["images"][0]["text"] == f"a {word} on the beach" and manifest["stepwise"] is False
        assert Image.open(out / manifest["images"][0]["file"]).size == (32, 32)
    # reference guidance on DreamBooth: the conditioning simply has no c_s
    out = tmp_path / "db_ref"
    assert main(_reference_args(db, out, "--steps", "3")) == 0
    item = json.loads((out / "predict.json").read_text())["images"][0]
    assert item["skipped"] is None and item["eq10_loss_after"] < item["eq10_loss_before"]
    assert main(["predict", "--subject", str(ti), "--prompts", '["a {}"]', "--stepwise", "true"]) == 2


def test_predict_into_a_file_is_refused_before_generating(fitted, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    args = ["predict", "--subject", str(fitted), "--prompts", '["a {}"]', "--out_dir", str(tmp_path / "taken")]
    assert main(args) == 2
    assert "taken is a file, so nothing can be written there" in capsys.readouterr().err


def test_a_base_model_from_a_subject_header_is_named_as_such_not_as_a_flag(tiny, tmp_path, capsys):
    from conftest import make_artifact

    art = make_artifact(tiny)
    art.metadata = {**art.metadata, "base_model": "/etc/passwd"}  # a crafted header
    art.save(tmp_path / "crafted.safetensors")
    args = ["predict", "--subject", str(tmp_path / "crafted.safetensors"), "--prompts", '["a {}"]']
    assert main([*args, "--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "its header's base_model /etc/passwd" in err and "--model.pretrained /etc/passwd" not in err, err


def test_a_huge_prompt_is_not_repeated_in_its_error_line(fitted, tmp_path, capsys):
    prompt = "x " * 5000  # 10 000 characters, no placeholder and no class word
    args = ["predict", "--subject", str(fitted), "--prompts", json.dumps([prompt]), "--out_dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "(10000 characters)" in err and len(err) < 400, err
