"""The paper's Table 2 on ToyWorld, scored with the exact measures (`hifilight.toyworld.fidelity`).

Generation and fitting are the DreamBench runner's (`hifilight evaluate`), run once per seed into `<out>/seed<s>/`;
this module reads the images it wrote and scores them: `toyworld_results.csv` (one line per seed x row x subject x
prompt), `toyworld_summary.json` and `toyworld_table.md` (per row: the mean over seeds of the mean over cells, and
the standard deviation over seeds; then each row's paired change against the row above it).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from itertools import pairwise
from pathlib import Path

from PIL import Image

from hifilight.data.images import list_images, load_rgb
from hifilight.evaluation.dreambench import BenchSubject
from hifilight.evaluation.runner import Row
from hifilight.io import image_grid, save_png, write_atomic
from hifilight.toyworld import calibrate as calibration
from hifilight.toyworld.dataset import HELD_OUT
from hifilight.toyworld.fidelity import MEASURES, ToyJudge

COLUMNS = ["seed", "method", "label", "subject", "prompt_index", "prompt", "images", *MEASURES]
LABELS = {"identity": "identity ↑", "attributes": "attributes ↑", "confidence": "confidence ↑",
          "toydino": "ToyDINO ↑", "prompt": "prompt ↑"}  # fmt: skip


def image_paths(folder: Path, index: int, n: int) -> list[Path]:
    """Where the runner put image k of prompt `index` (see Runner.image_paths)."""
    return [folder / f"p{index:02d}_{k}.png" for k in range(n)]


# The calibration rows of every table, from the same run and judge (see `hifilight.toyworld.calibrate`): the
# class-word floor and the text oracle from the base model, the true renders and what the base model's decoder keeps
# of them (every generated image goes through that decoder, so no method can beat its reading by much).
CALIBRATION = tuple(Row(name, calibration.LABELS[name], "real") for name in calibration.ROWS)


def score_runs(out: Path, seeds: list[int], rows: list[Row], subjects: list[BenchSubject], prompts: list[int],
               images_per_prompt: int, comps, judge: ToyJudge | None = None, steps: int = 25,
               guidance: float = 5.0, batch_size: int = 8) -> list[dict]:  # fmt: skip
    """Cells of the calibration rows (the base model `comps` draws the floor and the oracle) and of `rows`, per
    seed."""
    judge = judge or ToyJudge()
    sources = {s.name: judge.encoder.encode_images([load_rgb(p) for p in list_images(s.folder)]) for s in subjects}
    objects = {s.name: HELD_OUT[s.name] for s in subjects}
    cells = []

    def add(seed: int, row: str, label: str, subject: str, i: int, prompt: str, images: list[Image.Image]) -> None:
        scores = judge.score(images, objects[subject], prompt, sources[subject])
        cells.append({"seed": seed, "method": row, "label": label, "subject": subject, "prompt_index": i,
                      "prompt": prompt, "images": len(images), **scores})  # fmt: skip

    for seed in seeds:
        for c in calibration.calibration_cells(comps, objects, prompts, images_per_prompt, seed, steps, guidance,
                                               batch_size):  # fmt: skip
            add(seed, c.row, calibration.LABELS[c.row], c.subject, c.prompt_index, c.prompt, c.images)
        for row in rows:
            for subject in subjects:
                for i in prompts:
                    paths = image_paths(out / f"seed{seed}" / row.name / subject.name, i, images_per_prompt)
                    add(seed, row.name, row.label, subject.name, i, subject.prompts[i],
                        [Image.open(p).convert("RGB") for p in paths])  # fmt: skip
    return cells


def summarize(cells: list[dict], rows: list[Row], seeds: list[int]) -> dict:
    """Per row and measure: mean over seeds of the per-seed mean over cells, and the standard deviation over seeds
    (0 with one seed)."""
    methods = []
    for row in rows:
        entry = {"method": row.name, "label": row.label}
        for m in MEASURES:
            per_seed = [statistics.fmean(c[m] for c in cells if c["method"] == row.name and c["seed"] == s)
                        for s in seeds]  # fmt: skip
            entry[m] = {"mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed),
                        "per_seed": per_seed}  # fmt: skip
        entry["cells"] = sum(c["method"] == row.name for c in cells)
        methods.append(entry)
    add_normalised(methods)
    return {"seeds": seeds, "methods": methods, "gains": step_gains(cells, [r for r in rows if r.kind != "real"])}


def add_normalised(methods: list[dict]) -> None:
    """Each row's identity between the class-word floor (0) and the text oracle (1), when both rows are there."""
    by_name = {m["method"]: m for m in methods}
    if calibration.FLOOR in by_name and calibration.ORACLE in by_name:
        floor, oracle = (by_name[r]["identity"]["mean"] for r in (calibration.FLOOR, calibration.ORACLE))
        for m in methods:
            m["normalised_identity"] = calibration.normalised(m["identity"]["mean"], floor, oracle)


def _unit_means(cells: list[dict], row: Row) -> dict[tuple, dict[str, float]]:
    """Per (seed, subject): the row's mean over its prompts of every measure."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        if c["method"] == row.name:
            groups.setdefault((c["seed"], c["subject"]), []).append(c)
    return {unit: {m: statistics.fmean(c[m] for c in group) for m in MEASURES} for unit, group in groups.items()}


def step_gains(cells: list[dict], rows: list[Row]) -> list[dict]:
    """What each row changes against the row above it (Table 2's rows add one technique each), paired per (seed,
    subject): the mean of the differences of their means over prompts, and how many pairs rose and fell. Pairing
    takes out the subject-to-subject spread that dominates the spread over seeds."""
    means = {row.name: _unit_means(cells, row) for row in rows}
    gains = []
    for before, after in pairwise(rows):
        a, b = means[before.name], means[after.name]
        units = sorted(a.keys() & b.keys())
        entry = {"from": before.label, "to": after.label, "pairs": len(units)}
        for m in MEASURES:
            diffs = [b[u][m] - a[u][m] for u in units]
            entry[m] = {"mean": statistics.fmean(diffs) if diffs else 0.0, "up": sum(d > 0 for d in diffs),
                        "down": sum(d < 0 for d in diffs)}  # fmt: skip
        gains.append(entry)
    return gains


def gains_markdown(gains: list[dict]) -> list[str]:
    """The step table: per row, the mean paired change of each measure against the row above, (pairs up / down)."""
    if not gains:
        return []
    lines = ["| Change | " + " | ".join(f"Δ {m}" for m in MEASURES) + " |", "| --- " * (len(MEASURES) + 1) + "|"]
    for g in gains:
        values = [f"{g[m]['mean']:+.3f} ({g[m]['up']}↑ {g[m]['down']}↓)" for m in MEASURES]
        lines.append(f"| {g['from']} → {g['to']} | " + " | ".join(values) + " |")
    return ["", *lines, "",
            f"Each row against the one above it, paired per seed and subject ({gains[0]['pairs']} pairs): the mean "
            "change of the per-pair means over prompts, and how many pairs rose (↑) and fell (↓)."]  # fmt: skip


def markdown(summary: dict, protocol: str) -> str:
    norm = any("normalised_identity" in e for e in summary["methods"])
    heads = [LABELS[m] for m in MEASURES] + (["identity, normalised ↑"] if norm else [])
    lines = ["| Method | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    for entry in summary["methods"]:
        values = [f"{entry[m]['mean']:.3f} ± {entry[m]['std']:.3f}" for m in MEASURES]
        if norm:
            n = entry.get("normalised_identity")
            values.append("n/a" if n is None else f"{n:.2f}")
        lines.append(f"| {entry['label']} | " + " | ".join(values) + " |")
    lines += ["", protocol, "",
              "identity: share of images whose object has all the subject's attributes (shape, colour, pattern, "
              "pattern colour; the colour is left out for recolour prompts); attributes: mean per-attribute match; "
              "confidence: the classifier's mean probability of the subject's values; ToyDINO: cosine to the "
              "source photos; prompt: share of images with the background (or colour) the prompt asks for; "
              "identity, normalised: (row - floor) / (oracle - floor), 0 at the class-word floor, 1 at the text "
              "oracle. "
              "Mean over seeds of the mean over cells, ± the standard deviation over seeds. ToyWorld is a toy: "
              "these numbers say what the techniques do on ToySD, not on Stable Diffusion.",
              *gains_markdown(summary["gains"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(out: Path, cells: list[dict], summary: dict, protocol: str) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(cells)
    write_atomic(out / "toyworld_results.csv", lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)
    write_atomic(out / "toyworld_summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)),
                 overwrite=True)  # fmt: skip
    table = markdown(summary, protocol)
    write_atomic(out / "toyworld_table.md", lambda tmp: tmp.write_text(table), overwrite=True)
    return table


def write_grids(out: Path, seed: int, rows: list[Row], subjects: list[BenchSubject], prompts: list[int],
                images_per_prompt: int) -> list[Path]:  # fmt: skip
    """One grid per row and subject for `seed` (grids/<row>_<subject>.png): a line per prompt, its images in a row."""
    paths = []
    for row in rows:
        for subject in subjects:
            folder = out / f"seed{seed}" / row.name / subject.name
            images = [Image.open(p).convert("RGB") for i in prompts for p in image_paths(folder, i, images_per_prompt)]
            path = out / "grids" / f"{row.name}_{subject.name}.png"
            paths.append(save_png(image_grid(images, images_per_prompt), path, overwrite=True))
    return paths
