"""Subject masks (white = subject) behind one interface, so segmentation models can be added as providers.

Eq. (5) multiplies the diffusion loss by a binary subject mask M. A `MaskProvider` returns, for an image, a float
mask in {0, 1} of the image's size. Providers: "files" (mask images next to the photos), "grounded_sam" (Grounding
DINO + SAM from the class name, as in the paper; `hifilight.perception.grounded_sam`), "grabcut" (OpenCV, no
weights; `hifilight.perception.grabcut`) and "none" (the whole image, i.e. the unmasked loss of Eq. 2).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from hifilight import plugins
from hifilight.data.images import IMAGE_EXTENSIONS, load_gray
from hifilight.errors import HifiError


class MaskProvider(Protocol):
    name: str

    def __call__(self, image_path: Path, image: Image.Image) -> torch.Tensor:
        """Return a (1, H, W) float mask in {0, 1} for `image` (H, W = its size); white/1 = subject."""
        ...


class FullImageMaskProvider:
    """`none`: every pixel counts (plain Textual Inversion loss)."""

    name = "none"

    def __call__(self, image_path: Path, image: Image.Image) -> torch.Tensor:
        return torch.ones(1, image.height, image.width)


def binarize(gray: np.ndarray) -> np.ndarray:
    """0/1 and 0/255 encodings both work: a mask whose maximum is 1 is read as 0/1, otherwise >= 128 is subject."""
    return gray > 0 if gray.max() <= 1 else gray >= 128


class FilesMaskProvider:
    """`files`: a mask image with the same stem as the photo in `masks_dir` (e.g. photos/masks/00.png)."""

    name = "files"

    def __init__(self, masks_dir: Path):
        self.masks_dir = Path(masks_dir).expanduser()
        if not self.masks_dir.is_dir():
            raise HifiError(
                f"--data.masks_dir {self.masks_dir}: no such folder; create it with one mask per photo "
                "(same file stem, white = subject) or use --data.masks none"
            )

    def find(self, image_path: Path) -> Path:
        for ext in IMAGE_EXTENSIONS:
            candidate = self.masks_dir / f"{image_path.stem}{ext}"
            if candidate.is_file():
                return candidate
        raise HifiError(
            f"{image_path.name}: no mask named {image_path.stem}.png (or .jpg/.webp) in {self.masks_dir}; "
            "add one or use --data.masks none"
        )

    def __call__(self, image_path: Path, image: Image.Image) -> torch.Tensor:
        path = self.find(image_path)
        mask = binarize(load_gray(path))
        if mask.shape != (image.height, image.width):
            warnings.warn(
                f"{path.name}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.width}x{image.height}; "
                "resizing the mask (nearest)",
                stacklevel=2,
            )
            resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.NEAREST)
            mask = np.asarray(resized) >= 128
        if not mask.any():
            raise HifiError(
                f"{path}: mask is all zero, so this photo would train nothing; fix the mask (white = subject)"
            )
        return torch.from_numpy(mask.astype(np.float32))[None]


MASK_PROVIDERS = ("auto", "files", "grounded_sam", "grabcut", "toyworld", "none")


def build_mask_provider(
    kind: str,
    subject_dir: Path,
    masks_dir: Path | None,
    class_name: str = "object",
    segmentation=None,
    flag: str = "--data.masks",
) -> MaskProvider:
    """The provider named `kind`; `segmentation` (GroundedSamSettings) configures "grounded_sam"; `flag` is the
    option that chose it (for messages).

    "auto": mask files if `masks_dir` (default subject_dir/masks) exists; else Grounded SAM if its weights are in a
    local folder or the hub cache (nothing is downloaded); else GrabCut.
    """
    if kind == "auto":
        if (Path(masks_dir) if masks_dir is not None else Path(subject_dir) / "masks").is_dir():
            return build_mask_provider("files", subject_dir, masks_dir)
        return local_grounded_sam_or_grabcut(class_name, segmentation, flag)
    if kind == "none":
        return FullImageMaskProvider()
    if kind == "files":
        return FilesMaskProvider(masks_dir if masks_dir is not None else Path(subject_dir) / "masks")
    if kind == "grabcut":
        from hifilight.perception.grabcut import GrabCutMaskProvider

        return GrabCutMaskProvider()
    registered = plugins.mask_provider(kind)  # e.g. "toyworld" (ToySAM)
    if registered is not None:
        return registered()
    if kind == "grounded_sam":
        from hifilight.perception.grounded_sam import GroundedSam, GroundedSamMaskProvider, GroundedSamSettings

        return GroundedSamMaskProvider(GroundedSam.from_pretrained(segmentation or GroundedSamSettings()), class_name)
    raise HifiError(f"{flag} {kind}: unknown mask provider; use one of {', '.join(MASK_PROVIDERS)}")


def local_grounded_sam_or_grabcut(class_name: str, segmentation=None, flag: str = "--data.masks") -> MaskProvider:
    """Grounded SAM if its weights are in a local folder or the hub cache (nothing is downloaded), else GrabCut."""
    from hifilight.perception.grounded_sam import GroundedSam, GroundedSamMaskProvider, GroundedSamSettings

    try:
        model = GroundedSam.from_pretrained(segmentation or GroundedSamSettings(), offline=True)
        return GroundedSamMaskProvider(model, class_name)
    except HifiError:
        print(
            f"masks: no mask files and no local Grounded SAM weights; using GrabCut ({flag} to choose)", file=sys.stderr
        )
        from hifilight.perception.grabcut import GrabCutMaskProvider

        return GrabCutMaskProvider()


GENERATED_MASKS = ("auto", "grounded_sam", "grabcut", "toyworld", "none")


def build_generated_mask_provider(kind: str, class_name: str, segmentation=None) -> MaskProvider:
    """Masks of generated images (M_g of Algorithm 2): no files exist, so "auto" = local Grounded SAM else GrabCut."""
    if kind == "auto":
        return local_grounded_sam_or_grabcut(class_name, segmentation, "--reference.generated_masks")
    if kind not in GENERATED_MASKS:
        raise HifiError(
            f"--reference.generated_masks {kind}: unknown provider for generated images; use one of "
            f"{', '.join(GENERATED_MASKS)}"
        )
    return build_mask_provider(kind, Path("."), None, class_name, segmentation, "--reference.generated_masks")
