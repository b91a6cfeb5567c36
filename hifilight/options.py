"""The options the commands and the service share: the base model (`ModelOptions`, `resolve_device`), the subject's
source photos and reference-guided generation (`SourceOptions`, `ReferenceOptions`, `build_guide`; Algorithm 2
itself is `hifilight.sampling.reference`). Commands import these; no command imports another.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hifilight.data.masks import build_generated_mask_provider, build_mask_provider
from hifilight.errors import HifiError
from hifilight.perception.align import AlignSettings
from hifilight.perception.grounded_sam import GroundedSamSettings
from hifilight.sampling.guidance import GuidanceSettings
from hifilight.sampling.reference import ReferenceGuide, load_sources
from hifilight.subjects import Subject


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


def build_guide(
    subject: Subject, data: SourceOptions, options: ReferenceOptions, resolution: int, device: str, encoder=None
) -> ReferenceGuide:
    """Load the sources, DINO (unless `encoder` is given), the mask provider and the captioner."""
    if data.subject_dir is None:
        raise HifiError("--reference_guidance true needs the subject's photos: pass --data.subject_dir photos/")
    if subject.artifact is not None and subject.artifact.c_s_t is None:
        warnings.warn(
            "this subject artifact has no step-wise embeddings; reference guidance samples with c_s at every step "
            "(fit with --model.stepwise_steps > 0 for Eq. 7)",
            stacklevel=2,
        )
    from hifilight.perception.encoders import DinoEncoder

    class_name = subject.class_name
    encoder = encoder or DinoEncoder.from_pretrained(options.dino_model, device, flag="--reference.dino_model")
    source_masks = build_mask_provider(data.masks, data.subject_dir, data.masks_dir, class_name, options.segmentation)
    sources = load_sources(Path(data.subject_dir), source_masks, resolution, encoder)
    generated = build_generated_mask_provider(options.generated_masks, class_name, options.segmentation)
    return ReferenceGuide(
        sources, encoder, generated, _captioner(options, class_name, device), options.guide, options.align
    )


def _captioner(options: ReferenceOptions, class_name: str, device: str):
    fallback = f"a photo of a {class_name}"
    if options.caption:
        return lambda image: options.caption
    if options.captioner is None:
        print(f"reference caption: {fallback!r} (set --reference.captioner or --reference.caption)", file=sys.stderr)
        return lambda image: fallback
    from hifilight.perception.captioner import Blip2Captioner, captions_or_fallback

    model = Blip2Captioner.from_pretrained(options.captioner, device)
    return lambda image: captions_or_fallback(model, [image], fallback)[0]
