"""Table 2's ladder trains what each row says, and the tuning on the validation split is fair and recorded."""

import json
from pathlib import Path

import pytest

from hifilight.commands import fit as fit_command
from hifilight.errors import HifiError
from hifilight.evaluation import dreambench_protocol as protocol
from hifilight.evaluation.dreambench import BenchSubject
from hifilight.toyworld import tuning
from hifilight.toyworld.ablation import AblationArgs, run, table_rows_of
from hifilight.training import fit_cli

ROOT = Path(__file__).resolve().parents[2]


def ablation(**kwargs) -> dict:
    return run(AblationArgs(**kwargs))


ROWS = table_rows_of("table2_dreambooth", None)
LORA_ROWS = table_rows_of("lora_ladder", None)
GRID = {
    m: [["--model.learning_rate", "1e-3"], ["--model.learning_rate", "2e-3"]]
    for m in ("textual_inversion", "hifi_ti", "dreambooth")
}


def _fit_args(row, tmp_path, monkeypatch):
    """The `hifilight fit` arguments the evaluation fitter builds for `row` (captured, not run)."""
    seen = []
    monkeypatch.setattr(fit_cli, "build_cli", lambda args, run=True: seen.append(args))
    configs = {
        "hifi_ti": "configs/toyworld_hifi.yaml",
        "textual_inversion": "configs/toyworld_ti.yaml",
        "dreambooth": "configs/toyworld_dreambooth.yaml",
        "lora": "configs/toyworld_lora.yaml",
    }
    fitter = protocol._fitter(
        tmp_path, "tiny", "float32", configs, [], {}, 10, 64, {"ti_mask": ["--model.learning_rate", "0.5"]}
    )
    subject = BenchSubject("s", "dog", False, tmp_path, [])
    fitter(subject, row, tmp_path / "a" / "x.safetensors")
    return seen[0]


@pytest.mark.parametrize(
    "name", ["textual_inversion", "ti_mask", "regularization", "stepwise", "output_space", "lora", "lora_mask"]
)
def test_each_ladder_row_fits_what_it_says(name, tmp_path, monkeypatch):
    from conftest import EXAMPLE_SUBJECT

    monkeypatch.chdir(ROOT)
    row = next(r for r in ROWS + LORA_ROWS if r.name == name)
    args = _fit_args(row, tmp_path, monkeypatch)[1:]  # without the "fit" subcommand
    args[args.index("--data.subject_dir") + 1] = str(EXAMPLE_SUBJECT)
    monkeypatch.undo()
    monkeypatch.chdir(ROOT)
    cli = fit_command.build_cli(
        [*args, "--model.stepwise_num_steps", "10"] if row.kind == "hifi_ti" else args, run=False
    )
    hp, masks = cli.model.hparams, cli.datamodule.mask_provider.name
    if row.kind == "lora":  # UNet adapters; "+ mask" adds Eq. 5 and nothing else
        assert type(cli.model).__name__ == "LoRAModule" and hp.rank == 4
        assert hp.use_mask is row.mask and (masks == "none") is (not row.mask)
    elif row.kind == "textual_inversion":  # an input-space token; "+ mask" adds Eq. 5 and nothing else
        assert type(cli.model).__name__ == "TextualInversionModule"
        assert hp.use_mask is row.mask and (masks == "none") is (not row.mask)
        assert hp.learning_rate == (0.5 if name == "ti_mask" else 5e-3)  # the row's tuned arguments come last
    else:  # output-space c_s initialised from phi_s (Sec. 3.2), with or without Eq. 6
        assert type(cli.model).__name__ == "SubjectEmbeddingModule"
        assert hp.use_mask and hp.use_regularizer is row.regularizer
        assert hp.stepwise_steps > 0  # every HiFi fit runs Algorithm 1; rows without it sample with c_s alone


def test_a_tuned_record_inherits_choices_for_sampling_only_rows():
    scores = {
        r.name: [
            {
                "point": k,
                "args": GRID[m][k],
                "identity": [0.1, 0.3][k] if r.name != "dreambooth" else 0.2,
                "attributes": [0.4, 0.2][k],
                "toydino": [0.5, 0.4][k],
            }
            for k in range(2)
        ]
        for m, rows in tuning.tuned_rows(ROWS, GRID).items()
        for r in rows
    }
    assert tuning.record("val", [0], GRID, ROWS, scores)["chosen_point"]["ti_mask"] == 0  # default: attributes
    record = tuning.record("val", [0], GRID, ROWS, scores, measure="identity")
    assert record["chosen_point"]["ti_mask"] == 1  # higher identity
    assert record["chosen_point"]["dreambooth"] == 0  # equal identity: the higher ToyDINO
    assert record["choice"]["reference"] == record["choice"]["stepwise"]  # reference guidance reuses the fit
    assert record["choice"]["stepwise"] == record["choice"]["regularization"]  # one fit holds c_s and c_s^t
    assert record["choice"]["hifi_dreambooth"] == record["choice"]["dreambooth"]
    assert set(scores) == {"textual_inversion", "ti_mask", "regularization", "output_space", "dreambooth"}
    assert tuning.check_record(record, "t.json") == record["choice"]


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({}, "empty"),
        ({**GRID, "hifi_ti": GRID["hifi_ti"][:1]}, "unequal budgets"),
        ({"textual_inversion": GRID["textual_inversion"], "hifi_ti": GRID["hifi_ti"]}, "no points for dreambooth"),
        ({**GRID, "lora": GRID["hifi_ti"]}, "lora: no row"),
        ({**GRID, "hifi_ti": [["--model.learning_rate"], ["--x", "1"]]}, "flag/value"),
    ],
)
def test_unfair_or_malformed_grids_are_refused(grid, match):
    with pytest.raises(ValueError, match=match):
        tuning.check_grid(grid, ROWS)


def test_a_record_made_on_the_test_split_is_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"split": "test", "choice": {}}))
    with pytest.raises(HifiError, match="settings must be chosen on 'val' only"):
        ablation(out=tmp_path / "o", tuning=path)
    with pytest.raises(HifiError, match="no such file"):
        ablation(out=tmp_path / "o", tuning=tmp_path / "missing.json")
    with pytest.raises(HifiError, match="--rows"):
        ablation(out=tmp_path / "o", rows=["stepwise_typo"])


def test_tuning_parts_share_the_grid_and_the_last_run_writes_the_record(tmp_path, monkeypatch):
    from hifilight.toyworld import grid_search
    from hifilight.toyworld.grid_search import TuneArgs

    calls = []

    def fake_ablation(args, log=print):
        out, rows = args.out, args.rows
        calls.append((Path(out).parent.name, Path(out).name))
        value = 0.1 * int(Path(out).name[-1])
        return {"methods": [{"method": r, **{m: {"mean": value} for m in tuning.CHOICE_MEASURES}} for r in rows]}

    class toyworld:  # the command's arguments, as the CLI builds them
        @staticmethod
        def tune(grid, **kwargs):
            return grid_search.tune(TuneArgs(grid, **kwargs))

    monkeypatch.setattr(grid_search, "run", fake_ablation)
    record = tmp_path / "t" / "tuning.json"
    for part in ("0/2", "1/2"):
        toyworld.tune(GRID, out=tmp_path / "t", method="table2_dreambooth", part=part)
    assert not record.exists()  # a part writes no record
    every = [(m, f"point{k}") for m in GRID for k in range(2)]
    assert sorted(calls) == sorted(every)  # the two parts split the cells between them, each cell once
    calls.clear()
    toyworld.tune(GRID, out=tmp_path / "t", method="table2_dreambooth", subjects=["a", "b"])
    data = json.loads(record.read_text())
    assert (data["measure"], data["subjects"], data["chosen_point"]["ti_mask"]) == ("attributes", ["a", "b"], 1)
    with pytest.raises(HifiError, match="--part 2/2"):
        toyworld.tune(GRID, out=tmp_path / "u", method="table2_dreambooth", part="2/2")
    with pytest.raises(HifiError, match="--measure"):
        toyworld.tune(GRID, out=tmp_path / "u", method="table2_dreambooth", measure="clip")


def test_rows_outside_the_record_take_the_choice_of_the_table2_row_that_fits_the_same_way():
    from hifilight.evaluation.rows import method_rows
    from hifilight.toyworld.tuning import row_choices

    choice = {"textual_inversion": ["--model.max_steps", "150"], "regularization": ["--model.reg_weight", "1e-3"]}
    rows = method_rows("ti_vs_ours", reference=True)  # TI and "Ours" (mask, regulariser, step-wise, reference)
    out = row_choices(choice, rows)
    assert out["hifi_ti"] == ["--model.reg_weight", "1e-3"]  # the same fit as "+ regularization"
    assert out["textual_inversion"] == ["--model.max_steps", "150"] and out.keys() == {*choice, "hifi_ti"}
