"""ToyWorld personalization subjects and their DreamBench-layout dataset.

Subjects are two-coloured objects held out of pretraining (`pretraining_objects` never yields them), in two
splits: `VALIDATION_SUBJECTS`, on which every hyperparameter, default and training length is chosen, and
`SUBJECTS` (the test split), used for the final tables only. Each gets a few "source photos" in varied scenes with
exact masks. `write_dataset` lays them out as DreamBench does
(`<subject>/NN.png`, `<subject>/masks/NN.png`, `prompts_and_classes.txt` with the shape as class word), so
`hifilight fit --data.subject_dir toyworld/<subject>` and `hifilight evaluate --dataset toyworld/` read it as is.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from hifilight.io import check_writable, save_png
from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, PATTERNS, SHAPES, ToyObject, random_scene, render

SUBJECTS = {  # the test split
    "blue_star_yellow_dots": ToyObject("star", "blue", "dotted", "yellow"),
    "red_heart_white_stripes": ToyObject("heart", "red", "striped", "white"),
    "green_circle_black_checks": ToyObject("circle", "green", "checkered", "black"),
    "purple_square_orange_dots": ToyObject("square", "purple", "dotted", "orange"),
    "orange_ring_blue_stripes": ToyObject("ring", "orange", "striped", "blue"),
    "yellow_triangle_purple_checks": ToyObject("triangle", "yellow", "checkered", "purple"),
    "white_star_red_stripes": ToyObject("star", "white", "striped", "red"),
    "black_heart_green_dots": ToyObject("heart", "black", "dotted", "green"),
}
VALIDATION_SUBJECTS = {  # one of each shape and pattern, disjoint from the test subjects, also never pretrained on
    "green_star_white_checks": ToyObject("star", "green", "checkered", "white"),
    "yellow_heart_blue_dots": ToyObject("heart", "yellow", "dotted", "blue"),
    "purple_circle_yellow_stripes": ToyObject("circle", "purple", "striped", "yellow"),
    "red_square_black_checks": ToyObject("square", "red", "checkered", "black"),
    "blue_ring_orange_dots": ToyObject("ring", "blue", "dotted", "orange"),
    "orange_triangle_green_stripes": ToyObject("triangle", "orange", "striped", "green"),
    "white_circle_purple_dots": ToyObject("circle", "white", "dotted", "purple"),
    "black_square_red_stripes": ToyObject("square", "black", "striped", "red"),
}
SPLITS = {"val": VALIDATION_SUBJECTS, "test": SUBJECTS}
HELD_OUT = SUBJECTS | VALIDATION_SUBJECTS  # every subject by name, either split
PROMPTS = [f"a {{0}} {{1}} {phrase}" for phrase in BACKGROUNDS.values()] + ["a red {0} {1}", "a purple {0} {1}"]


def pretraining_objects() -> list[ToyObject]:
    """Every object the pretrained stand-ins may see: all shape x colour x pattern x second colour, minus the
    subjects of both splits (a plain object's second colour is irrelevant, so plain objects appear once per
    colour)."""
    held_out = set(HELD_OUT.values())
    out = []
    for shape, color, pattern in itertools.product(SHAPES, COLORS, PATTERNS):
        seconds = ["white"] if pattern == "plain" else [c for c in COLORS if c != color]
        out += [ToyObject(shape, color, pattern, second) for second in seconds]
    return [o for o in out if o not in held_out]


def prompt_file(names: list[str]) -> str:
    """prompts_and_classes.txt in the DreamBench layout (one list for objects and live subjects alike)."""
    rows = "\n".join(f"{name},{HELD_OUT[name].shape}" for name in names)
    listing = ",\n".join(f"'{p}'.format(unique_token, class_token)" for p in PROMPTS)
    return (
        f"Classes\n\nsubject_name,class\n{rows}\n\nPrompts\n\nObject Prompts\n\nprompt_list = [\n{listing}\n]\n\n"
        f"Live Subject Prompts\n\nprompt_list = [\n{listing}\n]\n"
    )


def split_names(split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return list(SPLITS[split])


def write_dataset(
    out: Path,
    names: list[str] | None = None,
    photos: int = 5,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    split: str = "test",
) -> list[Path]:
    """Write the subjects' source photos and masks (default: every subject of `split`); returns the folders."""
    names = names or split_names(split)
    unknown = [n for n in names if n not in HELD_OUT]
    if unknown:
        raise ValueError(f"unknown ToyWorld subjects {unknown}; choose from {', '.join(HELD_OUT)}")
    out = Path(out)
    check_writable(out / "prompts_and_classes.txt", overwrite)
    folders = []
    for name in names:
        folder = out / name
        for i, (image, mask) in enumerate(subject_photos(name, photos, size, seed)):
            save_png(Image.fromarray(image), folder / f"{i:02d}.png", overwrite)
            save_png(Image.fromarray(mask.astype(np.uint8) * 255), folder / "masks" / f"{i:02d}.png", overwrite)
        folders.append(folder)
    (out / "prompts_and_classes.txt").write_text(prompt_file(names))
    splits = sorted({split_of(n) for n in names})
    (out / "README.md").write_text(
        f"ToyWorld subjects ({' + '.join(splits)} split) generated by `hifilight toyworld "
        "dataset` (procedural, no third-party images).\n"
    )
    return folders


def subject_photos(name: str, photos: int = 5, size: int = 64, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """A subject's source photos (image, mask), each on another background; the same for any subset of subjects."""
    rng = np.random.default_rng([seed, subject_index(name)])
    return [
        render(random_scene(rng, HELD_OUT[name], str(bg)), size) for bg in rng.permutation(list(BACKGROUNDS))[:photos]
    ]


def subject_index(name: str) -> int:
    """A subject's fixed index (its photos' seed): test subjects 0-7 as they always were, validation from 100."""
    if name in SUBJECTS:
        return list(SUBJECTS).index(name)
    return 100 + list(VALIDATION_SUBJECTS).index(name)


def split_of(name: str) -> str:
    return next(split for split, subjects in SPLITS.items() if name in subjects)
