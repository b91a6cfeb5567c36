"""What the ToyWorld instrument can measure: calibration rows scored by the same judge as every method.

For a set of subjects and prompts, the base model is asked in words:
- the class-word floor ("a star on the beach"): what a method gets for free; the subjects must stay unnameable by
  their class word, or personalization has nothing to do;
- the text oracle ("a blue star with yellow dots on the beach"): what the base model draws when told exactly what
  the subject is; a method that learns the subject from photos is judged against it;
and the truth is scored as it is and through the base model's VAE: the true renders (the judge's ceiling) and the
renders decoded (the decoder's ceiling, since every generated image leaves that decoder).

`normalised(value, floor, oracle)` = (value - floor) / (oracle - floor) puts a method between the two.
"""

from __future__ import annotations

import statistics
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hifilight.data.images import to_pil, to_tensor
from hifilight.toyworld.ceiling import DREAMBOOTH, DREAMBOOTH_OWN, Ceiling, ceiling_cells
from hifilight.toyworld.ceiling import LABELS as CEILING_LABELS
from hifilight.toyworld.dataset import PROMPTS, subject_photos
from hifilight.toyworld.fidelity import MEASURES, SUBJECT_ATTRIBUTES, ToyJudge, prompt_target, subject_match
from hifilight.toyworld.scenes import ToyObject, random_scene, render

FLOOR, ORACLE, RENDERS, RECONSTRUCTIONS = "floor", "oracle", "renders", "vae_renders"
LABELS = {
    FLOOR: "class word only, e.g. 'a star on the beach' (floor)",
    ORACLE: "the full description in words (text oracle)",
    RENDERS: "true renders of the subject (judge's ceiling)",
    RECONSTRUCTIONS: "true renders through the base model's VAE (decoder's ceiling)",
}
TEXT_ROWS = (FLOOR, ORACLE)
ROWS = (FLOOR, ORACLE, RENDERS, RECONSTRUCTIONS)
ALL_ROWS = (*ROWS, DREAMBOOTH, DREAMBOOTH_OWN)  # with the fine-tuning ceiling (`calibrate(..., ceiling=...)`)
LABELS |= CEILING_LABELS
CLIP_MEASURES = ("clip_i", "clip_t")
BACKGROUND_PROMPTS = list(range(8))  # PROMPTS[0..7]: the subject on each background; 8, 9 recolour it


def prompt_object(obj: ToyObject, prompt: str) -> ToyObject:
    """The object a prompt asks for: the subject, or the subject recoloured ("a red {0} {1}")."""
    color = prompt_target(prompt, strict=False).color
    return ToyObject(obj.shape, color, obj.pattern, obj.pattern_color) if color else obj


def prompt_text(template: str, obj: ToyObject, row: str) -> str:
    """A DreamBench-layout prompt ("a {0} {1} on the beach", "a red {0} {1}") said in words: the class word alone
    (floor) or the whole description of the object the prompt asks for (oracle)."""
    if row == FLOOR:
        return " ".join(template.format("", obj.shape).split())
    asked = prompt_object(obj, template.format("", obj.shape))
    words = asked.words if prompt_target(template.format("", "")).color is None else asked.words.split(" ", 1)[1]
    return " ".join(template.format("", words).split())


def true_renders(obj: ToyObject, prompt: str, n: int, seed: int) -> list[Image.Image]:
    """n renders of what the prompt asks for: the subject on the asked background, or recoloured (any background)."""
    target = prompt_target(prompt)
    rng = np.random.default_rng([seed, zlib.crc32(prompt.encode())])
    return [
        Image.fromarray(render(random_scene(rng, prompt_object(obj, prompt), target.background))[0]) for _ in range(n)
    ]


@torch.no_grad()
def reconstruct(vae, images: list[Image.Image]) -> list[Image.Image]:
    """Images encoded (posterior mean) and decoded by an AutoencoderKL, as a generated image leaves its decoder."""
    x = torch.stack([to_tensor(im) for im in images]).to(vae.device, vae.dtype)
    decoded = vae.decode(vae.encode(x).latent_dist.mean).sample.float().cpu()
    return [to_pil((d + 1) / 2) for d in decoded]


def text_images(
    comps, texts: list[str], n: int, seed: int, steps: int, guidance: float, batch_size: int, cache: Path | None = None
) -> list[list[Image.Image]]:
    """n base-model images per text (x_T seeds from `seed` and the text, so a text gets the same images in any
    batch and any run). With `cache` (a folder of one run's protocol: model, steps, guidance), each text's images
    are kept there as PNGs and read back instead of generated again."""
    if cache is not None:
        return _cached_text_images(comps, texts, n, seed, steps, guidance, batch_size, cache)
    from hifilight.sampling.generate import Job
    from hifilight.sampling.renderer import SubjectRenderer

    jobs = [Job(t, t, seed + 1000 * (zlib.crc32(t.encode()) % 100_000) + k) for t in texts for k in range(n)]
    size = comps.unet.config.sample_size * comps.vae_scale_factor
    renderer = SubjectRenderer(comps).set_subject(None)  # the base model alone
    pil = [r.image for r in renderer.render(jobs, steps, guidance, size, batch_size, progress=False)]
    return [pil[i * n : (i + 1) * n] for i in range(len(texts))]


def _cached_text_images(comps, texts, n, seed, steps, guidance, batch_size, cache: Path) -> list[list[Image.Image]]:
    from hifilight.io import save_png

    paths = {t: [cache / f"{zlib.crc32(t.encode()):08x}_{k}.png" for k in range(n)] for t in texts}
    missing = sorted({t for t in texts if not all(p.is_file() for p in paths[t])})
    made = text_images(comps, missing, n, seed, steps, guidance, batch_size) if missing else []
    for text, images in zip(missing, made, strict=True):
        for path, image in zip(paths[text], images, strict=True):
            save_png(image, path, overwrite=True)
    return [[Image.open(p).convert("RGB") for p in paths[t]] for t in texts]


@dataclass(frozen=True)
class Cell:
    """One calibration row's images for one subject and prompt."""

    row: str
    subject: str
    prompt_index: int
    prompt: str
    images: list[Image.Image]


def calibration_cells(
    comps,
    subjects: dict[str, ToyObject],
    prompts: list[int],
    n: int,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 32,
    cache: Path | None = None,
) -> list[Cell]:
    """The four calibration rows' images for every subject x prompt (prompt indices into `dataset.PROMPTS`); the
    base model's images (floor, oracle) are kept in `cache` when given (see `text_images`)."""
    asks = [(name, i, PROMPTS[i].format("", obj.shape)) for name, obj in subjects.items() for i in prompts]
    cells = []
    for row in TEXT_ROWS:
        texts = [prompt_text(PROMPTS[i], subjects[name], row) for name, i, _ in asks]
        unique = sorted(set(texts))  # the floor's texts repeat across subjects of one shape: generate once
        images = text_images(comps, unique, n, seed, steps, guidance, batch_size, cache)
        made = dict(zip(unique, images, strict=True))
        cells += [Cell(row, name, i, p, made[t]) for (name, i, p), t in zip(asks, texts, strict=True)]
    renders = [Cell(RENDERS, name, i, p, true_renders(subjects[name], p, n, seed)) for name, i, p in asks]
    decoded = [
        Cell(RECONSTRUCTIONS, c.subject, c.prompt_index, c.prompt, reconstruct(comps.vae, c.images)) for c in renders
    ]
    return cells + renders + decoded  # in ROWS order


def score_cell(
    judge: ToyJudge, cell: Cell, obj: ToyObject, sources: torch.Tensor, clip=None, clip_sources=None
) -> dict[str, float]:
    """The judge's five measures of a cell, plus the per-attribute match rates (`match_<attribute>`, the colour
    against the asked one for a recolour prompt); with a CLIP encoder (`clip`, ToyCLIP in ToyWorld) the paper's
    CLIP-I (mean cosine to the source photos' embeddings `clip_sources`) and CLIP-T (to the prompt with the class
    word, "a star on the beach", as DreamBench scores it)."""
    reading = judge.read(cell.images)
    scores = judge.score(cell.images, obj, cell.prompt, sources, reading=reading)
    match = subject_match(reading[0], prompt_object(obj, cell.prompt)).float().mean(0)
    scores |= {f"match_{k}": float(v) for k, v in zip(SUBJECT_ATTRIBUTES, match, strict=True)}
    if clip is not None:
        images = clip.encode_images(cell.images)
        text = clip.encode_texts([" ".join(cell.prompt.split())])
        scores |= {"clip_i": float((images @ clip_sources.T).mean()), "clip_t": float((images @ text.T).mean())}
    return scores


def normalised(value: float, floor: float, oracle: float) -> float | None:
    """(value - floor) / (oracle - floor): 0 at the class-word floor, 1 at the text oracle (None if they meet)."""
    return (value - floor) / (oracle - floor) if abs(oracle - floor) > 1e-9 else None


def summarize_rows(scored: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per row: the mean over its cells of every measure (None where no cell has it: the prompt measure of a prompt
    that asks for nothing besides the subject, CLIP scores without a CLIP model)."""
    keys = [*MEASURES, *(f"match_{k}" for k in SUBJECT_ATTRIBUTES), *CLIP_MEASURES]
    rows = {}
    for row in ALL_ROWS:
        mine = [c for c in scored if c["row"] == row]
        if mine:
            values = {k: [c[k] for c in mine if c.get(k) is not None] for k in keys}
            rows[row] = {k: statistics.fmean(v) if v else None for k, v in values.items()} | {"cells": len(mine)}
    return rows


def calibrate(
    comps,
    subjects: dict[str, ToyObject],
    prompts: list[int] | None = None,
    n: int = 4,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 32,
    judge: ToyJudge | None = None,
    ceiling: Ceiling | None = None,
    clip=None,
) -> dict:
    """Calibration of `comps` (a ToySD) on `subjects`: per row the judge's measures, and the cells' scores. With
    `ceiling`, the fine-tuning ceiling's two rows (DreamBooth per subject, `hifilight.toyworld.ceiling`); with
    `clip` (a `ClipEncoder`: ToyCLIP), CLIP-I and CLIP-T beside the exact measures."""
    cells = all_cells(comps, subjects, prompts, n, seed, steps, guidance, batch_size, ceiling)
    return score_cells(cells, subjects, seed, judge or ToyJudge(), clip)


def all_cells(comps, subjects, prompts, n, seed, steps, guidance, batch_size, ceiling) -> list[Cell]:
    """Every row's images (see `calibrate`): the four calibration rows, then the ceiling's two when it is given."""
    prompts = BACKGROUND_PROMPTS if prompts is None else prompts
    cells = calibration_cells(comps, subjects, prompts, n, seed, steps, guidance, batch_size)
    if ceiling is not None:
        cells += ceiling_cells(comps, subjects, prompts, n, seed, steps, guidance, batch_size, ceiling)
    return cells


def source_photos(names, seed: int) -> dict[str, list[Image.Image]]:
    """Each subject's source photos (the ones DreamBooth fits on and CLIP-I / ToyDINO compare with)."""
    return {name: [Image.fromarray(im) for im, _ in subject_photos(name, seed=seed)] for name in names}


def score_cells(cells: list[Cell], subjects: dict[str, ToyObject], seed: int, judge: ToyJudge, clip=None) -> dict:
    """The judge's (and CLIP's) scores of every cell and their means per row."""
    photos = source_photos(subjects, seed)
    sources = {name: judge.encoder.encode_images(images) for name, images in photos.items()}
    clip_sources = {name: clip.encode_images(images) for name, images in photos.items()} if clip else {}
    scored = [
        {
            "row": c.row,
            "subject": c.subject,
            "prompt_index": c.prompt_index,
            "prompt": c.prompt,
            **score_cell(judge, c, subjects[c.subject], sources[c.subject], clip, clip_sources.get(c.subject)),
        }
        for c in cells
    ]
    return {"rows": summarize_rows(scored), "cells": scored}


PICTURE_ROWS = {FLOOR: "class word", ORACLE: "text oracle", DREAMBOOTH: "DreamBooth, new scenes",
                DREAMBOOTH_OWN: "DreamBooth, its training prompt"}  # fmt: skip


def picture(cells: list[Cell], photos: list[Image.Image], subject: str) -> Image.Image:
    """One subject side by side: its source photos, then a line per text row and ceiling row present in `cells`
    (the first image of each prompt, in prompt order, so a column is one prompt and one x_T; the training-prompt
    row shows all its images)."""
    from hifilight.viz import labelled_rows

    lines = [("source photos", photos)]
    for row, label in PICTURE_ROWS.items():
        mine = [c for c in cells if c.row == row and c.subject == subject]
        if mine:
            lines.append((label, mine[0].images if row == DREAMBOOTH_OWN else [c.images[0] for c in mine]))
    return labelled_rows(lines)


def perception_accuracy(n: int = 512, seed: int = 12345) -> dict:
    """The judge's and ToySAM's own quality on fresh renders of pretraining objects (a seed no training used)."""
    from hifilight.toyworld.models import accuracy, load, mean_iou

    return {
        "classifier_toysd": accuracy(load("classifier_toysd"), n, seed),
        "toysam_mean_iou": mean_iou(load("segmenter"), n // 2, seed),
    }
