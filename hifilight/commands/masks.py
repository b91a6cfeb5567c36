"""`hifilight masks`: write the subject masks a provider makes, plus an overlay grid to check them before training.

    hifilight masks --data.subject_dir photos/ --data.class_name teapot --masks grabcut --out photos/masks/

Polarity: white (255) = subject, black (0) = background; the `files` provider reads these PNGs back as they are.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jsonargparse import ArgumentParser
from PIL import Image

from hifilight.commands.common import function_parser, run_function
from hifilight.data.images import list_images, load_rgb
from hifilight.data.masks import build_mask_provider
from hifilight.errors import HifiError
from hifilight.io import check_output_folder, check_writable, image_grid, save_png
from hifilight.perception.grounded_sam import GroundedSamSettings

LOW, HIGH = 0.01, 0.90  # coverage outside these bounds suggests a failed or inverted mask


@dataclass
class MaskData:
    """The photos to segment.

    Args:
        subject_dir: folder with the subject's photos.
        class_name: the subject's class word (used by text-grounded providers).
    """

    subject_dir: Path
    class_name: str = "object"


def overlay(image: Image.Image, mask: np.ndarray, tile: int = 192) -> Image.Image:
    """The photo with the background dimmed and the subject tinted, for a quick visual check."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    tint = np.array([255, 64, 64], dtype=np.float32)
    out = np.where(mask[..., None], 0.6 * rgb + 0.4 * tint, 0.35 * rgb)
    return Image.fromarray(out.round().astype(np.uint8)).resize((tile, tile), Image.BILINEAR)


def masks(
    data: MaskData,
    masks: str = "grabcut",
    out: Path = Path("masks"),
    segmentation: GroundedSamSettings | None = None,
    overwrite: bool = False,
) -> None:
    """Write one mask PNG per photo (white = subject, black = background) and an overlay grid.

    Args:
        data: the photos.
        masks: mask provider: "grounded_sam" (Grounding DINO + SAM from --data.class_name), "grabcut" (OpenCV, no
            weights) or "none"; "files" re-exports existing masks.
        out: output folder; the `files` provider reads it with --data.masks files --data.masks_dir OUT.
        segmentation: Grounded SAM settings (model ids, thresholds, box choice, fallback).
        overwrite: replace existing mask files.
    """
    paths = list_images(data.subject_dir)
    provider = build_mask_provider(masks, data.subject_dir, None, data.class_name, segmentation, "--masks")
    targets = [Path(out) / f"{p.stem}.png" for p in paths]
    if len({t.name for t in targets}) != len(targets):
        raise HifiError(f"--data.subject_dir {data.subject_dir}: two photos share a file stem; rename one")
    check_output_folder(Path(out), "--out")
    for path in [*targets, Path(out) / "overlay.png"]:
        check_writable(path, overwrite, "--overwrite")
    tiles, results = [], []
    # every mask is made before any file is written: a photo that fails leaves no partial set behind
    for path in paths:
        image = load_rgb(path)
        mask = provider(path, image)[0].numpy() > 0.5
        coverage = float(mask.mean())
        if not LOW <= coverage <= HIGH:
            print(
                f"warning: {path.name}: mask covers {coverage:.1%} of the image (expected {LOW:.0%}-{HIGH:.0%}); "
                "check it in overlay.png: it may have failed or be inverted (white must be the subject)",
                file=sys.stderr,
            )
        results.append(mask)
        tiles.append(overlay(image, mask))
        print(f"{path.name}: subject covers {coverage:.1%}")
    for mask, target in zip(results, targets, strict=True):
        save_png(Image.fromarray(mask.astype(np.uint8) * 255), target, overwrite)
    save_png(image_grid(tiles, cols=min(len(tiles), 4)), Path(out) / "overlay.png", overwrite)
    print(f"wrote {len(targets)} masks and overlay.png to {out}")


def build_parser() -> ArgumentParser:
    return function_parser(masks, "hifilight masks")


def run(argv: list[str]) -> None:
    run_function(masks, "hifilight masks", argv)
