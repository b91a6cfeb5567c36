"""`hifilight toyworld ablation`: the seed statistics, and a reduced end-to-end run on the committed ToySD."""

import csv
import json

import pytest
from PIL import Image

from hifilight.errors import HifiError
from hifilight.evaluation.rows import Row
from hifilight.options import ReferenceOptions
from hifilight.sampling.guidance import GuidanceSettings
from hifilight.toyworld.ablation import AblationArgs, run
from hifilight.toyworld.fidelity import MEASURES
from hifilight.toyworld.report import markdown, summarize


def ablation(**kwargs) -> dict:
    return run(AblationArgs(**kwargs))


A, B = Row("a", "A", "hifi_ti"), Row("b", "B", "hifi_ti", base="a")


def _cell(seed, row, value, subject="s"):
    return {"seed": seed, "method": row.name, "subject": subject, **dict.fromkeys(MEASURES, value)}


def test_summary_is_mean_over_seeds_of_cell_means_with_their_spread():
    cells = [_cell(0, A, 0.2), _cell(0, A, 0.4), _cell(1, A, 0.6), _cell(0, B, 1.0), _cell(1, B, 1.0)]
    summary = summarize(cells, [A, B], [0, 1])
    a, b = summary["methods"]
    assert a["identity"]["per_seed"] == pytest.approx([0.3, 0.6])
    assert a["identity"]["mean"] == pytest.approx(0.45) and a["identity"]["std"] == pytest.approx(0.15)
    assert b["prompt"] == {"mean": 1.0, "std": 0.0, "per_seed": [1.0, 1.0], "ci95": {"low": 1.0, "high": 1.0}}
    assert a["cells"] == 3 and a["kind"] == "hifi_ti"
    table = markdown(summary, "protocol line")
    assert "| A | 0.450 ± 0.150 |" in table and "protocol line" in table


def test_step_gains_pair_each_row_with_its_base_per_seed_and_subject():
    # A -> B: subject x rises by 0.2 (mean of its two prompts 0.3 -> 0.5), subject y falls by 0.1, seed 1's x is equal
    cells = [
        _cell(0, A, 0.2, "x"),
        _cell(0, A, 0.4, "x"),
        _cell(0, B, 0.5, "x"),
        _cell(0, A, 0.6, "y"),
        _cell(0, B, 0.5, "y"),
        _cell(1, A, 0.7, "x"),
        _cell(1, B, 0.7, "x"),
    ]
    (gain,) = summarize(cells, [A, B], [0, 1])["gains"]
    assert gain["from"] == "A" and gain["to"] == "B" and gain["pairs"] == 3
    assert gain["identity"]["mean"] == pytest.approx(0.1 / 3)
    assert gain["identity"]["diffs"] == pytest.approx([0.2, -0.1, 0.0])  # units (0, x), (0, y), (1, x)
    assert (gain["identity"]["up"], gain["identity"]["down"]) == (1, 1)
    low, high = gain["identity"]["ci95"]["low"], gain["identity"]["ci95"]["high"]
    assert -0.1 <= low < 0 < high <= 0.2 and gain["identity"]["verdict"] == "n/a (< 3 subjects)"  # x and y only
    table = markdown(summarize(cells, [A, B], [0, 1]), "protocol line")
    assert "| A → B | +0.033 [" in table and "3 pairs" in table
    # the ceiling rows ("real") and rows without a base in the table are not ladder steps
    ceiling, lone = Row("c", "C", "real"), Row("d", "D", "hifi_ti", base="missing")
    ceilings = [_cell(s, r, 1.0, "x") for s in (0, 1) for r in (ceiling, lone)]
    assert len(summarize([*cells, *ceilings], [ceiling, A, B, lone], [0, 1])["gains"]) == 1


def test_a_step_that_helps_every_pair_is_called_so():
    C = Row("c", "C", "hifi_ti", base="a")
    cells = [_cell(s, r, v, subj) for s in (0, 1, 2) for subj in "xyz" for r, v in ((A, 0.1), (C, 0.3))]
    (gain,) = summarize(cells, [A, C], [0, 1, 2])["gains"]
    assert gain["identity"]["ci95"] == pytest.approx({"low": 0.2, "high": 0.2})
    assert gain["identity"]["verdict"] == "helps" and gain["pairs"] == 9


def test_bad_seeds_are_one_line_errors(tmp_path):
    with pytest.raises(HifiError, match="--seeds"):
        ablation(out=tmp_path, seeds=[0, 0])


def test_a_tuning_record_chosen_on_other_weights_is_refused_before_any_work(tmp_path):
    record = tmp_path / "tuning.json"
    record.write_text(json.dumps({"split": "val", "choice": {}, "weights": "0123456789abcdef"}))
    with pytest.raises(HifiError, match="chosen on other weights of tiny .*tune again") as err:
        ablation(out=tmp_path / "out", model="tiny", tuning=record)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


QUICK = {
    "hifi_ti": ["--model.stage1_steps", "3", "--model.stepwise_steps", "1"],
    "textual_inversion": ["--model.max_steps", "3"],
}


def reduced(out) -> dict:
    """A one-subject, two-prompt, one-image ablation of Textual Inversion against ours with 4 DDIM steps."""
    reference = ReferenceOptions(
        dino_model="toyworld", generated_masks="toyworld", guide=GuidanceSettings(start=3, end=2, inner_steps=1)
    )
    return dict(
        out=out,
        method="ti_vs_ours",
        seeds=[0],
        subjects=["blue_star_yellow_dots"],
        prompts=[1, 8],
        images_per_prompt=1,
        method_fit_args=QUICK,
        steps=4,
        batch_size=2,
        reference=reference,
    )


def test_reduced_ablation_runs_scores_and_resumes(tmp_path):
    kwargs = reduced(tmp_path)
    ablation(**kwargs)
    rows = list(csv.DictReader((tmp_path / "toyworld_results.csv").open()))
    calibration = ["floor", "oracle", "renders", "vae_renders"]
    assert [(r["method"], r["prompt_index"]) for r in rows] == [
        *((row, i) for row in calibration for i in ("1", "8")),
        ("textual_inversion", "1"),
        ("textual_inversion", "8"),
        ("hifi_ti", "1"),
        ("hifi_ti", "8"),
    ]
    assert all(0.0 <= float(r[m]) <= 1.0 for r in rows for m in ("identity", "attributes", "prompt"))
    # the ceiling rows score true renders and their ToySD VAE reconstructions: the classifier reads the background
    # and colour of both right (the VAE keeps them), and the reconstructions are not the renders themselves
    assert [float(r["prompt"]) for r in rows[4:8]] == [1.0] * 4
    assert rows[4]["toydino"] != rows[6]["toydino"]
    summary = json.loads((tmp_path / "toyworld_summary.json").read_text())
    assert [m["method"] for m in summary["methods"]] == [*calibration, "textual_inversion", "hifi_ti"]
    # every row placed between the floor (0) and the oracle (1) where they differ
    floor, oracle = (summary["methods"][k]["identity"]["mean"] for k in (0, 1))
    for m in summary["methods"]:
        expected = None if floor == oracle else (m["identity"]["mean"] - floor) / (oracle - floor)
        assert m["normalised_identity"] == expected
    assert "test split" in (tmp_path / "toyworld_table.md").read_text()
    assert (tmp_path / "grids" / "hifi_ti_blue_star_yellow_dots.png").is_file()
    # the comparison picture: 5 source photos, then a line per row with one image per prompt, 64 px cells
    assert Image.open(tmp_path / "grids" / "compare_blue_star_yellow_dots.png").size == (150 + 5 * 64, 3 * 64)
    # the ladder Textual Inversion -> ours, and the plot of every row with its interval
    assert Image.open(tmp_path / "grids" / "ladder_textual_inversion_blue_star_yellow_dots.png").size[1] == 3 * 64
    assert Image.open(tmp_path / "toyworld_plot.png").size[0] > 0
    record = json.loads((tmp_path / "toyworld_table.json").read_text())
    assert record["split"] == "test" and record["seeds"] == [0] and len(record["rows"]) == 6
    (step,) = record["steps"]
    assert (step["from"], step["to"], step["pairs"]) == ("textual_inversion", "hifi_ti", 1)
    assert step["identity"]["verdict"].startswith("n/a")  # one subject: no interval to judge by
    artifacts = sorted((tmp_path / "seed0" / "artifacts").rglob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in artifacts]
    ablation(**kwargs)  # resumes: nothing is refitted
    assert [p.stat().st_mtime_ns for p in artifacts] == stamps
    # a later session with only the scored cells (toyworld_cells.csv) and the runner's results.csv: no image is
    # needed, nothing is generated or scored again, and the table is the same
    import shutil

    before = (tmp_path / "toyworld_results.csv").read_text()
    for folder in ("hifi_ti", "textual_inversion", "calibration"):
        shutil.rmtree(tmp_path / "seed0" / folder)
    ablation(**kwargs)
    assert (tmp_path / "toyworld_results.csv").read_text() == before
    assert not (tmp_path / "seed0" / "hifi_ti").exists()
    # a snapshot (scored cells, runner results, single-file subjects) restored into a fresh folder gives the table
    # back without fitting or generating anything
    from hifilight.commands.toyworld import snapshot

    snapshot(tmp_path, tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap" / "seed0").iterdir()) == [
        "artifacts", "protocol.json", "results.csv", "toyworld_cells.csv"
    ]  # fmt: skip
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "snap", fresh)
    ablation(**{**kwargs, "out": fresh})
    assert (fresh / "toyworld_results.csv").read_text() == before
    assert not (fresh / "seed0" / "hifi_ti").exists()  # nothing generated


def test_seeds_run_as_parallel_one_thread_processes_give_the_cells_of_the_in_process_run(tmp_path):
    kwargs = reduced(tmp_path / "one")
    ablation(**kwargs)
    before = (tmp_path / "one" / "toyworld_results.csv").read_text()
    parallel = tmp_path / "parallel"
    ablation(**{**kwargs, "out": parallel, "seeds": [0, 1], "workers": 2})
    assert sorted(p.name for p in (parallel / "processes").glob("*.log")) == ["seed0.log", "seed1.log"]
    rows = list(csv.DictReader((parallel / "toyworld_results.csv").open()))
    assert sorted({r["seed"] for r in rows}) == ["0", "1"]
    # seed 0 in its one-thread process: the same fits and images as in this process, up to the rounding of
    # another thread count (ToyDINO cosines measured at most 2.5e-5 apart with 2 threads here, equal with one; the
    # bound leaves 80x room for other CPUs)
    mine = {(r["method"], r["prompt_index"]): r for r in rows if r["seed"] == "0"}
    for r in csv.DictReader(before.splitlines()):
        other = mine[(r["method"], r["prompt_index"])]
        assert float(other["toydino"]) == pytest.approx(float(r["toydino"]), abs=2e-3)


def test_an_out_folder_made_on_other_weights_is_refused_and_tuning_records_merge(tmp_path):
    from hifilight.toyworld.tuning import read_tunings

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "weights.txt").write_text("0123456789abcdef\n")
    with pytest.raises(HifiError, match="holds cells made on other weights .*use a new --out"):
        ablation(out=tmp_path / "out", model="tiny")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"split": "val", "choice": {"dreambooth": ["x"]}, "weights": "w"}))
    b.write_text(json.dumps({"split": "val", "choice": {"lora": ["y"], "lora_mask": []}, "weights": "w"}))
    merged = read_tunings([a, b])
    assert merged["choice"] == {"dreambooth": ["x"], "lora": ["y"], "lora_mask": []} and merged["weights"] == "w"
    with pytest.raises(HifiError, match="chooses rows another record chose too"):
        read_tunings([a, a])
    b.write_text(json.dumps({"split": "val", "choice": {"lora": ["y"]}, "weights": "v"}))
    with pytest.raises(HifiError, match="chosen on different weights"):
        read_tunings([a, b])
