"""`hifilight evaluate` end to end on the tiny preset: 2 subjects x 2 prompts x 1 image, table, resume."""

import csv
import json
import shutil

import pytest
from conftest import EXAMPLE_SUBJECT

from hifilight.cli import main
from hifilight.evaluation import runner as runner_module
from hifilight.evaluation.rows import method_rows
from hifilight.evaluation.runner import markdown_table, weighted

FIT = '["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]'
METHOD_FIT = json.dumps(
    {
        "hifi_ti": ["--model.stage1_steps", "2", "--model.stepwise_steps", "1"],
        "textual_inversion": ["--model.max_steps", "2"],
        "dreambooth": ["--model.max_steps", "1", "--model.num_class_images", "1", "--model.class_steps", "2"],
    }
)


def _dataset(tmp_path):
    root = tmp_path / "bench"
    for name, files in (("dog_a", ["00.jpg", "01.jpg"]), ("can_b", ["02.jpg", "03.jpg", "04.jpg"])):
        (root / name).mkdir(parents=True)
        for f in files:
            shutil.copy(EXAMPLE_SUBJECT / f, root / name / f)
    (root / "subjects.csv").write_text("subject_name,class\ndog_a,dog\ncan_b,can\n")
    return root


def _args(root, out, *extra):
    return [
        "evaluate",
        "--dataset",
        str(root),
        "--method",
        "table1",
        "--out",
        str(out),
        "--images_per_prompt",
        "1",
        "--prompts",
        "[0, 20]",
        "--model.pretrained",
        "tiny",
        "--steps",
        "2",
        "--resolution",
        "32",
        "--metrics.dino_model",
        "tiny",
        "--metrics.clip_model",
        "tiny",
        "--fit_args",
        FIT,
        "--method_fit_args",
        METHOD_FIT,
        "--reference.dino_model",
        "tiny",
        "--reference.guide.start",
        "2",
        "--reference.guide.end",
        "1",
        "--reference.guide.inner_steps",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    root, out = _dataset(tmp), tmp / "out"
    assert main(_args(root, out)) == 0
    return root, out


def _rows(out):
    with (out / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


ROWS = ["real", "sd", "textual_inversion", "hifi_ti", "dreambooth", "hifi_dreambooth"]


def test_files_cells_and_table(evaluated):
    _, out = evaluated
    rows = _rows(out)
    # real: one cell per subject; every other row: 2 subjects x 2 prompts
    assert sorted((r["method"], r["subject"], r["prompt_index"]) for r in rows if r["method"] == "real") == [
        ("real", "can_b", "-1"),
        ("real", "dog_a", "-1"),
    ]
    for name in ROWS[1:]:
        assert sum(r["method"] == name for r in rows) == 4, name
        for subject in ("dog_a", "can_b"):
            assert (out / name / subject / "p00_0.png").is_file() and (out / name / subject / "p20_0.png").is_file()
    # reference guidance is applied to the rigid object only (paper Sec. 4), unless --reference_on_live
    applied = {(r["method"], r["subject"]) for r in rows if r["reference_applied"] == "True"}
    assert applied == {("hifi_ti", "can_b"), ("hifi_dreambooth", "can_b")}
    assert {r["prompt"] for r in rows if r["subject"] == "can_b" and r["method"] == "sd"} == {
        "a {0} {1} in the jungle",
        "a red {0} {1}",
    }
    artifacts = out / "artifacts" / "dog_a"
    assert (artifacts / "mask1_reg1.safetensors").is_file()
    assert (artifacts / "textual_inversion.safetensors").is_file() and (artifacts / "dreambooth").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert [m["method"] for m in summary["methods"]] == ROWS
    assert summary["methods"][0]["clip_t"] is None
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == "| Method | DINO ↑ | CLIP-I ↑ | CLIP-T ↑ |"
    labels = [t.split(" | ")[0][2:] for t in table[2:8]]
    assert labels == [
        "Real images",
        "Stable Diffusion (no subject)",
        "Textual Inversion",
        "Ours (Textual Inversion)",
        "DreamBooth",
        "Ours (DreamBooth)",
    ]
    assert "N/A" in table[2] and "pairing all" in table[9] and "Random-weight models" in table[-1]
    # real-vs-real of a subject with 3 photos: 6 ordered pairs; 1 generated image vs 3 real photos: 3 pairs
    real_can = next(r for r in rows if r["method"] == "real" and r["subject"] == "can_b")
    assert real_can["dino_pairs"] == "6"
    hifi_can = next(r for r in rows if r["method"] == "hifi_ti" and r["subject"] == "can_b")
    assert hifi_can["dino_pairs"] == "3" and hifi_can["clip_t_pairs"] == "1"


def test_rerun_reuses_everything_on_disk(evaluated, monkeypatch):
    root, out = evaluated
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    calls = []
    original = runner_module.Runner._make_images
    monkeypatch.setattr(runner_module.Runner, "_make_images", lambda *a: calls.append(a) or original(*a))
    # drop one scored cell: only it is rescored, from the images already on disk; nothing is fitted again
    rows = _rows(out)
    kept = [r for r in rows if not (r["method"] == "hifi_ti" and r["subject"] == "dog_a" and r["prompt_index"] == "0")]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    assert main(_args(root, out, "--fit_args", '["--this_flag_would_fail"]')) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    assert len(calls) == 1  # the one cell's subject: its image exists, so nothing is generated
    again = {(r["method"], r["subject"], r["prompt_index"]): r["dino"] for r in _rows(out)}
    assert again == {(r["method"], r["subject"], r["prompt_index"]): r["dino"] for r in rows}


def test_another_protocol_is_refused(evaluated, capsys):
    root, out = evaluated
    assert main(_args(root, out, "--metrics.pairing", "one_to_one")) == 2
    assert "another protocol" in capsys.readouterr().err


def test_weighted_mean_and_table_rows():
    cells = [{"dino": "0.5", "dino_pairs": "2"}, {"dino": "1.0", "dino_pairs": "6"}, {"dino": "", "dino_pairs": "0"}]
    assert weighted(cells, "dino") == pytest.approx((0.5 * 2 + 6) / 8)
    assert weighted([], "dino") is None
    summary = {
        "protocol": {
            "dino": {"encoder": "d", "pairing": "all", "scale100": False},
            "clip_i": {"encoder": "c"},
            "clip_t": {"text": "class"},
            "images_per_prompt": 4,
            "steps": 50,
            "guidance": 7.5,
            "resolution": 512,
            "base_model": "sd",
        },
        "methods": [{"label": "X", "dino": 0.6654, "clip_i": 0.8, "clip_t": None}],
    }
    assert "| X | 0.665 | 0.800 | N/A |" in markdown_table(summary)


def test_table2_is_the_papers_ladder_one_technique_per_row():
    rows = {r.name: r for r in method_rows("table2_dreambooth")}
    ladder = ["textual_inversion", "ti_mask", "regularization", "stepwise", "reference"]
    assert [r.base for r in map(rows.get, ladder)] == [None, *ladder[:-1]]
    ti, masked = rows["textual_inversion"], rows["ti_mask"]
    assert (ti.kind, ti.mask, masked.kind, masked.mask) == ("textual_inversion", False, "textual_inversion", True)
    assert ti.artifact_key != masked.artifact_key  # the masked token is its own fit
    reg = rows["regularization"]  # the move to the output space comes with Eq. 6 (Sec. 3.2)
    assert (reg.kind, reg.mask, reg.regularizer, reg.stepwise, reg.reference) == ("hifi_ti", True, True, False, False)
    assert rows["stepwise"].stepwise and not rows["stepwise"].reference and rows["reference"].reference
    assert rows["reference"].artifact_key == rows["stepwise"].artifact_key  # guidance is sampling only
    assert rows["stepwise"].artifact_key == rows["regularization"].artifact_key  # one fit: c_s, then c_s^t
    extra = rows["output_space"]
    assert (extra.kind, extra.mask, extra.regularizer, extra.base) == ("hifi_ti", True, False, "ti_mask")
    assert rows["hifi_dreambooth"].base == "dreambooth" and rows["hifi_dreambooth"].reference


def test_dataset_without_classes_says_what_to_add(tmp_path, capsys):
    root = _dataset(tmp_path)
    (root / "subjects.csv").unlink()
    assert main(_args(root, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "prompts_and_classes.txt or subjects.csv" in err and "--class_name" in err


def test_two_processes_give_the_single_process_result(tmp_path):
    """--devices 2 runs two shard processes (CPU here) and merges their cells: the same table as one process."""
    root = _dataset(tmp_path)
    common = [
        "--method",
        "sd",
        "--images_per_prompt",
        "1",
        "--prompts",
        "[0, 3]",
        "--model.pretrained",
        "tiny",
        "--steps",
        "2",
        "--resolution",
        "32",
        "--metrics.dino_model",
        "tiny",
        "--metrics.clip_model",
        "tiny",
        "--model.device",
        "cpu",
    ]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(["evaluate", "--dataset", str(root), "--out", str(single), *common]) == 0
    assert main(["evaluate", "--dataset", str(root), "--out", str(multi), *common, "--devices", "2"]) == 0
    key = lambda r: (r["method"], r["subject"], r["prompt_index"])  # noqa: E731
    one = {key(r): r for r in _rows(single)}
    two = {key(r): r for r in _rows(multi)}
    assert one.keys() == two.keys() and len(one) == 4
    for k in one:
        for metric in ("dino", "clip_i", "clip_t"):
            assert float(two[k][metric]) == pytest.approx(float(one[k][metric]), abs=1e-5)
    assert not list(multi.glob("results.shard*.csv"))  # merged and removed
    assert {p.name for p in (multi / "shards").iterdir()} == {"shard0.yaml", "shard1.yaml", "shard0.log", "shard1.log"}
    s1, s2 = (json.loads((d / "summary.json").read_text())["methods"][0] for d in (single, multi))
    assert s2["dino"] == pytest.approx(s1["dino"], abs=1e-6) and s2["cells"] == s1["cells"] == 4


def test_bad_shard_and_devices(tmp_path, capsys):
    root = _dataset(tmp_path)
    assert main(["evaluate", "--dataset", str(root), "--shard", "2/2", "--out", str(tmp_path / "o")]) == 2
    assert "--shard 2/2" in capsys.readouterr().err


def test_lora_ladder_fits_each_row_once_and_guides_only_the_last(tmp_path):
    """LoRA -> + mask -> + reference guidance: two fits (the guided row reuses the masked one), one subject."""
    root = _dataset(tmp_path)
    lora = ["--model.max_steps", "1", "--model.num_class_images", "1", "--model.class_steps", "2"]
    args = _args(root, tmp_path / "o", "--subjects", "[can_b]")
    args[args.index("table1")] = "lora_ladder"
    args[args.index("--method_fit_args") + 1] = json.dumps({"lora": lora})
    assert main(args) == 0
    rows = _rows(tmp_path / "o")
    assert sorted({r["method"] for r in rows}) == ["lora", "lora_mask", "lora_reference"]
    assert {r["method"] for r in rows if r["reference_applied"] == "True"} == {"lora_reference"}
    artifacts = tmp_path / "o" / "artifacts" / "can_b"
    assert sorted(p.name for p in artifacts.iterdir()) == ["lora.safetensors", "lora_mask.safetensors"]


def test_lora_is_a_step_from_dreambooth_where_both_are_in_the_table():
    from hifilight.toyworld.report import ladder_steps

    steps = {(a.name, b.name) for a, b in ladder_steps(method_rows("table2_lora"))}
    assert {("dreambooth", "lora"), ("lora", "lora_mask"), ("lora_mask", "lora_reference")} <= steps
    assert ("dreambooth", "lora") not in {(a.name, b.name) for a, b in ladder_steps(method_rows("lora_ladder"))}
