"""`hifilight predict --reference_guidance true`: the options and outputs of reference-guided generation
(Algorithm 2; the algorithm itself is `hifilight.sampling.reference`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hifilight.data.masks import build_generated_mask_provider, build_mask_provider
from hifilight.errors import HifiError
from hifilight.perception.align import AlignSettings
from hifilight.perception.grounded_sam import GroundedSamSettings
from hifilight.sampling.guidance import GuidanceSettings
from hifilight.sampling.reference import ReferenceGuide, ReferenceRecord, SourceSet, load_sources
from hifilight.subjects import Subject


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
        dino_model: DINO model that picks the reference photo (paper: ViT-S/16): hub id, local folder, or "tiny".
        generated_masks: how to segment the generated image (M_g): "auto" (local Grounded SAM, else GrabCut),
            "grounded_sam", "grabcut" or "none" (whole image).
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


INTERMEDIATES = ("g1", "mask_g", "reference", "reference_aligned", "mask_r_aligned")


def output_names(path: Path, save_intermediates: bool) -> list[Path]:
    """I_g1 always; the masks and references with --save_intermediates."""
    kinds = INTERMEDIATES if save_intermediates else INTERMEDIATES[:1]
    return [path.with_name(f"{path.stem}_{kind}.png") for kind in kinds]


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
    encoder = encoder or DinoEncoder.from_pretrained(options.dino_model, device)
    source_masks = build_mask_provider(data.masks, data.subject_dir, data.masks_dir, class_name, options.segmentation)
    sources = load_sources(Path(data.subject_dir), source_masks, resolution, encoder)
    generated = build_generated_mask_provider(options.generated_masks, class_name, options.segmentation)
    return ReferenceGuide(sources, encoder, generated, _captioner(options, class_name, device),
                          options.guide, options.align)  # fmt: skip


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


def save_record(record: ReferenceRecord, sources: SourceSet, path: Path, save_intermediates: bool, overwrite: bool):
    """Write I_g1 (and the intermediates) next to the final image `path`."""
    from hifilight.io import save_png

    names = output_names(path, save_intermediates)
    save_png(record.first, names[0], overwrite)
    if not save_intermediates:
        return
    mask_png = lambda m: Image.fromarray((m[0].numpy() * 255).astype("uint8"))  # noqa: E731
    extras = {
        names[1]: record.mask_g,
        names[2]: sources.images[record.reference] if record.reference is not None else None,
        names[3]: record.aligned_reference,
        names[4]: record.mask_r_aligned,
    }
    for name, item in extras.items():
        if item is not None:
            save_png(item if isinstance(item, Image.Image) else mask_png(item), name, overwrite)
