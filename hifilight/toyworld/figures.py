"""ToyWorld's pictures and plot from an ablation's folder: the image grids (a row's images of one subject), the
comparison (source photos, then a line per row), one picture per ladder (the rows that add one technique each, on
the same prompts and x_T), and `toyworld_plot.png` (identity and ToyDINO per row with their 95% intervals).

Only images still on disk are drawn: a run restored from a snapshot has scored cells and no images.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from hifilight.data.images import list_images, load_rgb
from hifilight.evaluation.dreambench import BenchSubject
from hifilight.evaluation.rows import Row
from hifilight.io import image_grid, save_png, write_atomic
from hifilight.toyworld.cells import LABELS, image_paths
from hifilight.viz import labelled_rows

PLOTTED = ("identity", "toydino")  # the plot's panels: the exact measure and the paper's DINO


def write_grids(
    out: Path, seed: int, rows: list[Row], subjects: list[BenchSubject], prompts: list[int], images_per_prompt: int
) -> list[Path]:
    """One grid per row and subject for `seed` (grids/<row>_<subject>.png): a line per prompt, its images in a row;
    none for a row and subject whose images are not on disk (scored in an earlier session, see CELL_CACHE)."""
    paths = []
    for row in rows:
        for subject in subjects:
            folder = out / f"seed{seed}" / row.name / subject.name
            files = [p for i in prompts for p in image_paths(folder, i, images_per_prompt)]
            if not all(p.is_file() for p in files):
                continue
            images = [Image.open(p).convert("RGB") for p in files]
            path = out / "grids" / f"{row.name}_{subject.name}.png"
            paths.append(save_png(image_grid(images, images_per_prompt), path, overwrite=True))
    return paths


def _row_line(out: Path, seed: int, row: Row, subject: BenchSubject, prompts: list[int]) -> list[Image.Image] | None:
    """A row's first image of every prompt for `subject`, or None when they are not all on disk."""
    files = [image_paths(out / f"seed{seed}" / row.name / subject.name, i, 1)[0] for i in prompts]
    return [Image.open(p).convert("RGB") for p in files] if all(p.is_file() for p in files) else None


def _lines_picture(out, seed: int, rows: list[Row], subject: BenchSubject, prompts: list[int]) -> Image.Image | None:
    """Source photos, then a labelled line per row on disk (same x_T across rows, so lines differ only by the
    method); None when no row is on disk."""
    lines = [(row.label, line) for row in rows if (line := _row_line(out, seed, row, subject, prompts))]
    if not lines:
        return None
    return labelled_rows([("source photos", [load_rgb(p) for p in list_images(subject.folder)]), *lines])


def write_comparison(out: Path, seed: int, rows: list[Row], subject: BenchSubject, prompts: list[int]) -> Path | None:
    """One picture to open (grids/compare_<subject>.png): the source photos, then one labelled line per row with
    its first image of every prompt; rows whose images are not on disk are left out, and with none on disk
    (every cell scored earlier, see CELL_CACHE) nothing is written (None)."""
    image = _lines_picture(out, seed, rows, subject, prompts)
    return None if image is None else save_png(image, out / "grids" / f"compare_{subject.name}.png", overwrite=True)


def ladders(rows: list[Row]) -> list[list[Row]]:
    """The table's ladders: each row that starts one (no base in the table, some row built on it) with every row
    built on it, directly or through others, in table order (Table 2: Textual Inversion -> + mask -> ...)."""
    names = {r.name for r in rows}
    children: dict[str, list[Row]] = {}
    for r in rows:
        if r.base in names:
            children.setdefault(r.base, []).append(r)

    def tree(row: Row) -> list[Row]:
        return [row, *(x for child in children.get(row.name, []) for x in tree(child))]

    order = {r.name: i for i, r in enumerate(rows)}
    return [sorted(tree(r), key=lambda x: order[x.name]) for r in rows if r.base not in names and r.name in children]


def write_ladders(out: Path, seed: int, rows: list[Row], subject: BenchSubject, prompts: list[int]) -> list[Path]:
    """grids/ladder_<first row>_<subject>.png per ladder: the source photos, then one line per row of the ladder,
    each adding one technique to the line it is built on (see `ladders`)."""
    paths = []
    for ladder in ladders(rows):
        image = _lines_picture(out, seed, ladder, subject, prompts)
        if image is not None:
            path = out / "grids" / f"ladder_{ladder[0].name}_{subject.name}.png"
            paths.append(save_png(image, path, overwrite=True))
    return paths


def write_plot(out: Path, summary: dict, protocol: str) -> Path:
    """toyworld_plot.png: per row (top to bottom in table order) the mean of each PLOTTED measure and its
    bootstrap 95% interval (`report.row_interval`); calibration rows ("real") grey, method rows blue."""
    from matplotlib.figure import Figure

    methods = summary["methods"]
    fig = Figure(figsize=(11, 1.2 + 0.42 * len(methods)), layout="constrained")
    axes = fig.subplots(1, len(PLOTTED), sharey=True)
    ys = list(range(len(methods)))[::-1]
    for ax, measure in zip(axes, PLOTTED, strict=True):
        for y, m in zip(ys, methods, strict=True):
            value, ci = m[measure]["mean"], m[measure]["ci95"]
            colour = "0.55" if m.get("kind") == "real" else "tab:blue"
            ax.errorbar(value, y, xerr=[[value - ci["low"]], [ci["high"] - value]], fmt="o", color=colour, capsize=3)
        ax.set_title(LABELS[measure])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, [m["label"] for m in methods])
    fig.suptitle(protocol, fontsize=7, wrap=True)
    path = out / "toyworld_plot.png"
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=True)
