"""GrabCut subject masks (OpenCV): no model weights, initialised from a box or a centre prior.

GrabCut models foreground and background colours with Gaussian mixtures and cuts the image graph between them.
Without a box it assumes the subject sits inside the centre of the photo: a border of `margin` (fraction of each
side) is taken as certain background and everything inside as probable foreground, which fits subject photos
like DreamBench's. It is a fallback for when no segmentation weights are available, not a substitute for SAM.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class GrabCutSettings:
    margin: float = 0.06  # border (fraction of width/height) taken as background when no box is given
    iterations: int = 5
    max_side: int = 320  # GrabCut runs at most at this size; the mask is resized back
    largest_component: bool = True  # keep only the largest connected foreground region


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def grabcut(
    rgb: np.ndarray, box: tuple[int, int, int, int] | None = None, settings: GrabCutSettings = GrabCutSettings()
) -> np.ndarray:
    """Boolean subject mask (H, W) of an RGB uint8 image; `box` = (x0, y0, x1, y1) in pixels, else centre prior."""
    h, w = rgb.shape[:2]
    scale = min(1.0, settings.max_side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    if box is None:
        mx, my = max(1, round(sw * settings.margin)), max(1, round(sh * settings.margin))
        rect = (mx, my, sw - 2 * mx, sh - 2 * my)
    else:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        rect = (max(0, x0), max(0, y0), max(1, min(sw, x1) - max(0, x0)), max(1, min(sh, y1) - max(0, y0)))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation draws from OpenCV's global RNG: same photo, same mask
    cv2.grabCut(
        cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, rect, bgd, fgd, settings.iterations, cv2.GC_INIT_WITH_RECT
    )
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if settings.largest_component and fg.any():
        fg = _largest_component(fg)
    return cv2.resize(fg.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


class GrabCutMaskProvider:
    """`grabcut`: OpenCV GrabCut from a centre prior; an empty result falls back to the prior's box, with a warning."""

    name = "grabcut"

    def __init__(self, settings: GrabCutSettings = GrabCutSettings()):
        self.settings = settings

    def __call__(self, image_path: Path, image: Image.Image) -> torch.Tensor:
        mask = grabcut(np.asarray(image.convert("RGB")), None, self.settings)
        if not mask.any():
            warnings.warn(
                f"{Path(image_path).name}: GrabCut found no subject; using the centre box instead", stacklevel=2
            )
            h, w = mask.shape
            my, mx = round(h * self.settings.margin), round(w * self.settings.margin)
            mask[my : h - my, mx : w - mx] = True
        return torch.from_numpy(mask.astype(np.float32))[None]
