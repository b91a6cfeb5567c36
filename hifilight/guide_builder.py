"""The reference guide of Algorithm 2 built from the shared options: the subject's source photos and their masks, DINO
(or another image encoder) to pick the reference, the provider of the generated image's mask, and the captioner
(`build_guide`; the options are `hifilight.options`, the algorithm `hifilight.sampling.reference`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from hifilight.data.masks import build_generated_mask_provider, build_mask_provider
from hifilight.errors import HifiError
from hifilight.options import ReferenceOptions, SourceOptions
from hifilight.sampling.reference import ReferenceGuide, load_sources
from hifilight.subjects import Subject


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
