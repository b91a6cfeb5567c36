"""The options the commands and the service share: the base model (`ModelOptions`, `resolve_device`), the subject's
source photos and reference-guided generation (`SourceOptions`, `ReferenceOptions`; `hifilight.guide_builder`
builds the guide from them, Algorithm 2 itself is `hifilight.sampling.reference`). Commands import these; no
command imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hifilight.perception.align import AlignSettings
from hifilight.perception.grounded_sam import GroundedSamSettings
from hifilight.sampling.guidance import GuidanceSettings


@dataclass
class ModelOptions:
    """Base model options.

    Args:
        pretrained: base model (hub id, local folder or "tiny"); default: the one the artifact was trained on.
        dtype: float32, float16 or bfloat16.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    """

    pretrained: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "auto"


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when available, else "cpu"; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class SourceOptions:
    """The subject's source photos (reference candidates); the same flags as `hifilight fit`.

    Args:
        subject_dir: folder with the subject's photos.
        masks: their masks M_r: "auto" (files in masks_dir, else local Grounded SAM, else GrabCut), "files",
            "grounded_sam", "grabcut" or "none" (whole image).
        masks_dir: mask images, white = subject, same stem as the photo (default: subject_dir/masks).
    """

    subject_dir: Path | None = None
    masks: str = "auto"
    masks_dir: Path | None = None


@dataclass
class ReferenceOptions:
    """Reference-guided generation (Algorithm 2).

    Args:
        dino_model: DINO model that picks the reference photo (paper: ViT-S/16): hub id, local folder, "tiny", or
            a plugin's name ("toyworld": ToyDINO, for ToyWorld subjects).
        generated_masks: how to segment the generated image (M_g): "auto" (local Grounded SAM, else GrabCut),
            "grounded_sam", "grabcut", "none" (whole image), or a plugin's name ("toyworld": ToySAM).
        caption: caption of the reference photo for c_r; default: the captioner's, else "a photo of a <class>".
        captioner: BLIP-2 hub id or local folder to caption the reference (paper: BLIP-2); unset: no captioner.
        guide: t_s, t_e, J and the phi_h optimiser (Eq. 10).
        align: the T_theta fit (Eq. 8-9, Appendix B).
        segmentation: Grounded SAM settings, for either mask choice "grounded_sam" / "auto".
    """

    dino_model: str = "facebook/dino-vits16"
    generated_masks: str = "auto"
    caption: str | None = None
    captioner: str | None = None
    guide: GuidanceSettings = field(default_factory=GuidanceSettings)
    align: AlignSettings = field(default_factory=AlignSettings)
    segmentation: GroundedSamSettings = field(default_factory=GroundedSamSettings)
