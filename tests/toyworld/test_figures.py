"""ToyWorld's pictures and plot: drawn from the images on disk, one picture per ladder, intervals per row."""

import pytest
from PIL import Image

from hifilight.evaluation.rows import Row, method_rows
from hifilight.toyworld.fidelity import MEASURES
from hifilight.toyworld.figures import ladders, write_plot
from hifilight.toyworld.report import summarize


def test_a_comparison_is_written_only_from_images_on_disk(tmp_path):
    """A run restored from a snapshot has scored cells but no images: no picture of the source photos alone."""
    from hifilight.evaluation.dreambench import BenchSubject
    from hifilight.io import save_png
    from hifilight.toyworld.cells import image_paths
    from hifilight.toyworld.figures import write_comparison

    photos = tmp_path / "photos"
    for k in range(2):
        save_png(Image.new("RGB", (64, 64), (k * 100, 0, 0)), photos / f"{k}.png")
    subject = BenchSubject("s", "star", photos, False, ("a {0} {1}",) * 2)
    rows = [Row(name, name, name, False, False, False) for name in ("lora", "dreambooth")]
    assert write_comparison(tmp_path, 0, rows, subject, [0, 1]) is None
    assert not (tmp_path / "grids").exists()
    for i in (0, 1):
        save_png(Image.new("RGB", (64, 64), "white"), image_paths(tmp_path / "seed0" / "lora" / "s", i, 1)[0])
    path = write_comparison(tmp_path, 0, rows, subject, [0, 1])
    assert Image.open(path).size == (150 + 2 * 64, 2 * 64)  # the photos, then LoRA's line; DreamBooth's is not on disk


def test_ladders_are_the_rows_built_on_each_starting_row_in_table_order():
    names = [[r.name for r in ladder] for ladder in ladders(method_rows("table2_lora", reference=True))]
    assert names == [
        ["textual_inversion", "ti_mask", "regularization", "stepwise", "reference", "output_space"],
        ["dreambooth", "hifi_dreambooth", "lora", "lora_mask", "lora_reference"],
    ]
    # LoRA's base row (DreamBooth) is not in this table: the ladder starts at LoRA
    assert [[r.name for r in x] for x in ladders(method_rows("lora_ladder", reference=True))] == [
        ["lora", "lora_mask", "lora_reference"]
    ]
    assert [[r.name for r in x] for x in ladders(method_rows("ti_vs_ours", reference=True))] == [
        ["textual_inversion", "hifi_ti"]
    ]


def test_each_row_gets_a_bootstrap_interval_over_subjects_and_the_plot_draws_every_row(tmp_path):
    a, b = Row("a", "A", "real"), Row("b", "B", "hifi_ti")
    cells = [
        {"seed": s, "method": r.name, "subject": subj, **dict.fromkeys(MEASURES, v + 0.1 * k)}
        for s in (0, 1)
        for k, subj in enumerate("xyz")
        for r, v in ((a, 0.2), (b, 0.5))
    ]
    summary = summarize(cells, [a, b], [0, 1])
    low, high = summary["methods"][1]["identity"]["ci95"].values()
    # three subjects at 0.5, 0.6, 0.7: resampled means lie between the smallest and the largest
    assert 0.5 <= low < 0.6 < high <= 0.7 and summary["methods"][1]["identity"]["mean"] == pytest.approx(0.6)
    path = write_plot(tmp_path, summary, "protocol line")
    small = Image.open(path).size
    more = summarize(cells + [{**c, "method": "c"} for c in cells], [a, b, Row("c", "C", "hifi_ti")], [0, 1])
    (tmp_path / "more").mkdir()
    assert Image.open(write_plot(tmp_path / "more", more, "protocol line")).size[1] > small[1]  # a line per row
