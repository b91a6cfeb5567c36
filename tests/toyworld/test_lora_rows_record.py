"""The committed LoRA rows (docs/toyworld/lora_rows.json): DreamBooth -> LoRA -> + mask -> + reference guidance on
the test split at 3 seeds, settings from the validation split, DreamBooth's cells Table 2's own, and the README
quotes it."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = json.loads((ROOT / "docs/toyworld/lora_rows.json").read_text())
TABLE2 = json.loads((ROOT / "docs/toyworld/table2.json").read_text())
LADDER = ["dreambooth", "lora", "lora_mask", "lora_reference"]


def _row(record: dict, method: str) -> dict:
    return next(r for r in record["rows"] if r["method"] == method)


def test_the_record_is_the_ladder_on_the_test_split_at_three_seeds_tuned_on_validation():
    assert RECORD["split"] == "test" and RECORD["seeds"] == [0, 1, 2]
    assert RECORD["tuning"]["split"] == "val"
    assert {"dreambooth", "lora", "lora_mask"} <= RECORD["tuning"]["choice"].keys()
    assert [(s["from"], s["to"]) for s in RECORD["steps"]] == list(zip(LADDER, LADDER[1:], strict=False))
    for step in RECORD["steps"]:
        assert step["pairs"] == 24  # 8 subjects x 3 seeds
        for measure in ("identity", "attributes"):
            m = step[measure]
            assert m["ci95"]["low"] <= m["mean"] <= m["ci95"]["high"]
            assert len(m["diffs"]) == 24 and abs(sum(m["diffs"]) / 24 - m["mean"]) < 1e-9


def test_the_dreambooth_row_is_table2s_on_the_same_weights():
    """The LoRA rows are a step from Table 2's DreamBooth cells, not from a new DreamBooth run."""
    assert RECORD["weights"] == TABLE2["weights"]
    for measure in ("identity", "attributes", "toydino"):
        assert _row(RECORD, "dreambooth")[measure] == _row(TABLE2, "dreambooth")[measure]
        assert _row(RECORD, "oracle")[measure] == _row(TABLE2, "oracle")[measure]


def test_the_readme_quotes_the_record():
    readme = (ROOT / "README.md").read_text()
    for method in ("lora", "lora_mask", "lora_reference"):
        assert f"{_row(RECORD, method)['identity']['mean']:.3f}" in readme, method
