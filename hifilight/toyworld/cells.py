"""ToyWorld's scored cells: every (seed, row, subject, prompt) of an ablation scored by the exact measures
(`hifilight.toyworld.fidelity`), cached per seed so a rerun or a later session scores nothing twice, and the
snapshot that resumes a long ablation without its images.

Generation and fitting are the DreamBench runner's (`hifilight evaluate`), run once per seed into `<out>/seed<s>/`;
this module reads the images it wrote and scores them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

from hifilight.data.images import list_images, load_rgb
from hifilight.evaluation.dreambench import BenchSubject
from hifilight.evaluation.rows import Row
from hifilight.io import write_atomic
from hifilight.toyworld import calibrate as calibration
from hifilight.toyworld.dataset import HELD_OUT
from hifilight.toyworld.fidelity import MEASURES, ToyJudge

# "prompt_text" is the prompt; "prompt" is the prompt-fidelity measure (MEASURES)
COLUMNS = ["seed", "method", "label", "subject", "prompt_index", "prompt_text", "images", *MEASURES]
LABELS = {
    "identity": "identity ↑",
    "attributes": "attributes ↑",
    "confidence": "confidence ↑",
    "toydino": "ToyDINO ↑",
    "prompt": "prompt ↑",
}


def image_paths(folder: Path, index: int, n: int) -> list[Path]:
    """Where the runner put image k of prompt `index` (see Runner.image_paths)."""
    return [folder / f"p{index:02d}_{k}.png" for k in range(n)]


# The calibration rows of every table, from the same run and judge (see `hifilight.toyworld.calibrate`): the
# class-word floor and the text oracle from the base model, the true renders and what the base model's decoder keeps
# of them (every generated image goes through that decoder, so no method can beat its reading by much).
CALIBRATION = tuple(Row(name, calibration.LABELS[name], "real") for name in calibration.ROWS)


# Every scored cell of a seed, kept in <out>/seed<s>/toyworld_cells.csv and read back instead of scored again: a
# rerun (or a later session with this file and the runner's results.csv) needs no image of a scored cell. The run's
# folder pins the protocol (the runner's protocol.json); the judge is the committed classifier_toysd.
CELL_CACHE = "toyworld_cells.csv"
INT_FIELDS = ("seed", "prompt_index", "images")


WEIGHTS_MARKER = "weights.txt"  # in an ablation's --out: the fingerprint of the weights its cells were made on


def load_cells(path: Path) -> dict[tuple, dict]:
    """(method, subject, prompt_index) -> cell, from a seed's CELL_CACHE ({} when there is none)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [
        {k: int(v) if k in INT_FIELDS else v if k in TEXT_FIELDS else float(v) for k, v in r.items()} for r in rows
    ]
    return {(c["method"], c["subject"], c["prompt_index"]): c for c in cells}


TEXT_FIELDS = ("method", "label", "subject", "prompt_text")


def save_cells(path: Path, cells: dict[tuple, dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(cells.values())
    write_atomic(path, lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)


def score_runs(
    out: Path,
    seeds: list[int],
    rows: list[Row],
    subjects: list[BenchSubject],
    prompts: list[int],
    images_per_prompt: int,
    comps,
    judge: ToyJudge | None = None,
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 8,
    calibration_rows: bool = True,
) -> list[dict]:
    """Cells of the calibration rows (the base model `comps` draws the floor and the oracle; skipped without
    `calibration_rows`) and of `rows`, per seed; cells scored before are read from the seed's CELL_CACHE."""
    scorer = Scorer(judge or ToyJudge(), subjects)
    cells = []
    for seed in seeds:
        folder = out / f"seed{seed}"
        cached = load_cells(folder / CELL_CACHE)
        if calibration_rows:
            keys = [(r, s.name, i) for r in calibration.ROWS for s in subjects for i in prompts]
            if not all(k in cached for k in keys):
                made = calibration.calibration_cells(
                    comps,
                    scorer.objects,
                    prompts,
                    images_per_prompt,
                    seed,
                    steps,
                    guidance,
                    batch_size,
                    cache=folder / "calibration",
                )
                for c in made:
                    label = calibration.LABELS[c.row]
                    scorer.add(cached, seed, c.row, label, c.subject, c.prompt_index, c.prompt, lambda c=c: c.images)
            cells += [cached[k] for k in keys]
        for row in rows:
            for subject in subjects:
                for i in prompts:
                    paths = image_paths(folder / row.name / subject.name, i, images_per_prompt)
                    read = lambda paths=paths: [Image.open(p).convert("RGB") for p in paths]  # noqa: E731
                    scorer.add(cached, seed, row.name, row.label, subject.name, i, subject.prompts[i], read)
                    cells.append(cached[(row.name, subject.name, i)])
        save_cells(folder / CELL_CACHE, cached)
    return cells


class Scorer:
    """The judge with each subject's source-photo embeddings and true object."""

    def __init__(self, judge: ToyJudge, subjects: list[BenchSubject]):
        self.judge = judge
        self.sources = {
            s.name: judge.encoder.encode_images([load_rgb(p) for p in list_images(s.folder)]) for s in subjects
        }
        self.objects = {s.name: HELD_OUT[s.name] for s in subjects}

    def add(self, cached: dict, seed: int, row: str, label: str, subject: str, i: int, prompt: str, images) -> None:
        """Score the cell (`images()` gives its images) unless `cached` has it."""
        if (row, subject, i) in cached:
            return
        shown = images()
        scores = self.judge.score(shown, self.objects[subject], prompt, self.sources[subject])
        cached[(row, subject, i)] = {
            "seed": seed,
            "method": row,
            "label": label,
            "subject": subject,
            "prompt_index": i,
            "prompt_text": prompt,
            "images": len(shown),
            **scores,
        }


def snapshot(out: Path, dest: Path) -> dict[int, int]:
    """What a later session needs to resume a long ablation without its images: per seed the runner's
    results.csv and protocol.json, every cell scored (cells the runner made but nobody scored yet are scored now;
    cells whose images are gone are dropped from results.csv, so the runner makes them again) and the fitted
    subjects that are single files (DreamBooth folders are left out: a row still missing cells refits). Restore by
    copying `dest` over the ablation's --out and rerunning it. Returns the number of scored cells per seed."""
    import shutil

    from hifilight.evaluation.dreambench import load_dreambench

    bench = {s.name: s for s in load_dreambench(out / "dataset")}
    scorer = Scorer(ToyJudge(), list(bench.values()))
    if (out / WEIGHTS_MARKER).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / WEIGHTS_MARKER, dest / WEIGHTS_MARKER)
    counts = {}
    for folder in sorted(out.glob("seed*")):
        seed, target = int(folder.name[4:]), dest / folder.name
        cached = load_cells(folder / CELL_CACHE)
        with (folder / "results.csv").open(newline="") as f:
            made = list(csv.DictReader(f))
        kept = []
        for r in made:
            subject, i, row = bench[r["subject"]], int(r["prompt_index"]), r["method"]
            paths = sorted((folder / row / subject.name).glob(f"p{i:02d}_*.png"))
            if (row, subject.name, i) not in cached and paths:
                read = lambda paths=paths: [Image.open(p).convert("RGB") for p in paths]  # noqa: E731
                scorer.add(cached, seed, row, r["label"], subject.name, i, subject.prompts[i], read)
            if (row, subject.name, i) in cached:
                kept.append(r)
        target.mkdir(parents=True, exist_ok=True)
        save_cells(target / CELL_CACHE, cached)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(made[0]) if made else ["method"])
        writer.writeheader()
        writer.writerows(kept)
        text = buf.getvalue()
        write_atomic(target / "results.csv", lambda tmp, text=text: tmp.write_text(text), overwrite=True)
        shutil.copy(folder / "protocol.json", target / "protocol.json")
        for path in (folder / "artifacts").glob("*/*.safetensors"):  # <subject>/<file>: not a DreamBooth folder's
            if path.is_file():
                copy = target / path.relative_to(folder)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, copy)
        counts[seed] = len(cached)
    return counts
