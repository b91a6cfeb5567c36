"""`hifilight toyworld dataset`: write the ToyWorld personalization subjects in the DreamBench layout.

hifilight toyworld dataset --out toyworld/ --photos 5
"""

from __future__ import annotations

from pathlib import Path

from hifilight.commands.common import run_function
from hifilight.errors import HifiError


def dataset(out: Path = Path("outputs/toyworld"), subjects: list[str] | None = None, photos: int = 5,
            size: int = 64, seed: int = 0, overwrite: bool = False) -> None:  # fmt: skip
    """Write ToyWorld subjects (held-out two-coloured objects): photos, exact masks, prompts_and_classes.txt.

    Args:
        out: dataset folder (then `hifilight evaluate --dataset <out>` or `fit --data.subject_dir <out>/<subject>`).
        subjects: subject names (default all 8).
        photos: source photos per subject, each on another background (1..8).
        size: image size in pixels (a multiple of 8).
        seed: seed of poses and textures.
        overwrite: replace existing files.
    """
    from hifilight.toyworld.dataset import write_dataset

    if not 1 <= photos <= 8 or size % 8 or size < 16:
        raise HifiError(f"--photos must be in 1..8 and --size a multiple of 8 >= 16, got {photos} and {size}")
    try:
        folders = write_dataset(out, subjects, photos, size, seed, overwrite)
    except ValueError as err:
        raise HifiError(f"--subjects: {err}") from None
    print(f"wrote {len(folders)} ToyWorld subjects to {out}")


def run(argv: list[str]) -> None:
    if not argv or argv[0] != "dataset":
        raise HifiError("usage: hifilight toyworld dataset [--out folder] [--photos 5]")
    run_function(dataset, "hifilight toyworld dataset", argv[1:])
