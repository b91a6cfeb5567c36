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
import zlib
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hifilight.data.images import list_images, load_rgb, to_pil, to_tensor
from hifilight.evaluation.dreambench import BenchSubject
from hifilight.evaluation.runner import Row
from hifilight.io import image_grid, save_png, write_atomic
from hifilight.toyworld.dataset import SUBJECTS
from hifilight.toyworld.fidelity import MEASURES, ToyJudge, prompt_target
from hifilight.toyworld.scenes import ToyObject, random_scene, render

COLUMNS = ["seed", "method", "label", "subject", "prompt_index", "prompt", "images", *MEASURES]
LABELS = {"identity": "identity ↑", "attributes": "attributes ↑", "confidence": "confidence ↑",
          "toydino": "ToyDINO ↑", "prompt": "prompt ↑"}  # fmt: skip


def image_paths(folder: Path, index: int, n: int) -> list[Path]:
    """Where the runner put image k of prompt `index` (see Runner.image_paths)."""
    return [folder / f"p{index:02d}_{k}.png" for k in range(n)]


RENDERS = Row("renders", "ToyWorld renders of the subject (ceiling)", "real")
# What the base model's autoencoder keeps of those renders: every image the model generates goes through its
# decoder, so no method can beat the judge's reading of the decoder's own reconstructions by much.
RECONSTRUCTIONS = Row("vae_renders", "Those renders through the base model's VAE (its ceiling)", "real")
CEILINGS = (RENDERS, RECONSTRUCTIONS)


def true_renders(obj: ToyObject, prompt: str, n: int, seed: int) -> list[Image.Image]:
    """n renders of what the prompt asks for: the subject on the asked background, or recoloured (any background)."""
    target = prompt_target(prompt)
    if target.color:
        obj = ToyObject(obj.shape, target.color, obj.pattern, obj.pattern_color)
    rng = np.random.default_rng([seed, zlib.crc32(prompt.encode())])
    return [Image.fromarray(render(random_scene(rng, obj, target.background))[0]) for _ in range(n)]


@torch.no_grad()
def reconstruct(vae, images: list[Image.Image]) -> list[Image.Image]:
    """Images encoded (posterior mean) and decoded by an AutoencoderKL, as a generated image leaves its decoder."""
    x = torch.stack([to_tensor(im) for im in images]).to(vae.device, vae.dtype)
    decoded = vae.decode(vae.encode(x).latent_dist.mean).sample.float().cpu()
    return [to_pil((d + 1) / 2) for d in decoded]


def score_runs(out: Path, seeds: list[int], rows: list[Row], subjects: list[BenchSubject], prompts: list[int],
               images_per_prompt: int, vae=None, judge: ToyJudge | None = None) -> list[dict]:  # fmt: skip
    """Cells of the ceiling rows (true renders; with `vae`, also their reconstructions) and of `rows`."""
    judge = judge or ToyJudge()
    sources = {s.name: judge.encoder.encode_images([load_rgb(p) for p in list_images(s.folder)]) for s in subjects}
    cells = []
    for seed in seeds:
        for subject in subjects:  # the ceilings: what the judge says of the truth, and of the truth decoded
            for i in prompts:
                obj, prompt = SUBJECTS[subject.name], subject.prompts[i]
                renders = true_renders(obj, prompt, images_per_prompt, seed)
                for row, images in ((RENDERS, renders), (RECONSTRUCTIONS, vae and reconstruct(vae, renders))):
                    if not images:
                        continue
                    scores = judge.score(images, obj, prompt, sources[subject.name])
                    cells.append({"seed": seed, "method": row.name, "label": row.label, "subject": subject.name,
                                  "prompt_index": i, "prompt": prompt, "images": len(images), **scores})  # fmt: skip
        for row in rows:
            for subject in subjects:
                for i in prompts:
                    paths = image_paths(out / f"seed{seed}" / row.name / subject.name, i, images_per_prompt)
                    images = [Image.open(p).convert("RGB") for p in paths]
                    prompt = subject.prompts[i]
                    scores = judge.score(images, SUBJECTS[subject.name], prompt, sources[subject.name])
                    cells.append({"seed": seed, "method": row.name, "label": row.label, "subject": subject.name,
                                  "prompt_index": i, "prompt": prompt, "images": len(images), **scores})  # fmt: skip
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
    return {"seeds": seeds, "methods": methods, "gains": step_gains(cells, [r for r in rows if r.kind != "real"])}


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
    lines = ["| Method | " + " | ".join(LABELS[m] for m in MEASURES) + " |", "| --- " * (len(MEASURES) + 1) + "|"]
    for entry in summary["methods"]:
        values = [f"{entry[m]['mean']:.3f} ± {entry[m]['std']:.3f}" for m in MEASURES]
        lines.append(f"| {entry['label']} | " + " | ".join(values) + " |")
    lines += ["", protocol, "",
              "identity: share of images whose object has all the subject's attributes (shape, colour, pattern, "
              "pattern colour; the colour is left out for recolour prompts); attributes: mean per-attribute match; "
              "confidence: the classifier's mean probability of the subject's values; ToyDINO: cosine to the "
              "source photos; prompt: share of images with the background (or colour) the prompt asks for. "
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
