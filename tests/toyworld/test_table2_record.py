"""The committed Table 2 summary (docs/toyworld/table2.json) is the test split at 3 seeds with every ladder step's
paired interval, and the README quotes it."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = json.loads((ROOT / "docs/toyworld/table2.json").read_text())
LADDER = ["textual_inversion", "ti_mask", "regularization", "stepwise", "reference", "dreambooth", "hifi_dreambooth"]


def test_the_record_is_the_test_split_at_three_seeds_with_the_papers_ladder():
    assert RECORD["split"] == "test" and RECORD["seeds"] == [0, 1, 2]
    assert RECORD["tuning"]["split"] == "val"  # settings were chosen on the other split
    methods = [row["method"] for row in RECORD["rows"]]
    assert all(m in methods for m in [*LADDER, "floor", "oracle"])
    for step in RECORD["steps"]:
        assert step["pairs"] == 24
        for measure in ("identity", "attributes"):
            m = step[measure]
            assert m["ci95"]["low"] <= m["mean"] <= m["ci95"]["high"]
            assert len(m["diffs"]) == 24 and abs(sum(m["diffs"]) / 24 - m["mean"]) < 1e-9


def test_the_readme_quotes_the_record():
    readme = (ROOT / "README.md").read_text()
    identity = {row["method"]: row["identity"]["mean"] for row in RECORD["rows"]}
    for method in ("textual_inversion", "reference", "dreambooth", "hifi_dreambooth"):
        assert f"{identity[method]:.3f}" in readme, method


def test_the_records_name_the_weights_they_were_made_on():
    """Table 2 and its tuning were made on the same ToySD weights; if the committed ToySD is newer, the ToyWorld
    docs say which weights the table belongs to."""
    from hifilight.models import load_components

    tuning = json.loads((ROOT / "docs/toyworld/tuning.json").read_text())
    assert len(RECORD["weights"]) == 16 and tuning["weights"] == RECORD["weights"]
    if load_components("toysd").fingerprint() != RECORD["weights"]:
        assert RECORD["weights"] in (ROOT / "docs/toyworld.md").read_text()
