"""Reference-guided generation, Algorithm 2 end to end (Sec. 3.3), per generated image:

1. generate I_g1 from x_T with [c, c_s^t] (Eq. 7), keeping x_{t_s} (the guided run resumes from it: the steps
   before t_s are identical, so they are not run twice);
2. M_g: the subject mask of I_g1 (a `MaskProvider`, e.g. Grounded SAM with the class name);
3. I_r: the source image whose DINO embedding is closest (cosine) to I_g1's, with its mask M_r;
4. T_theta (Eq. 8-9, `hifilight.perception.align`) aligns M_r to M_g; I_r* = T_theta(I_r), M_r* = T_theta(M_r);
5. caption I_r -> c_r; x_0* = VAE(I_r*); DDIM inversion (Eq. 3, guidance 1) -> [x_0*, ..., x_T*];
6. re-generate from x_T with substitution at t_s and masked null-text guidance (Eq. 10) until t_e -> I_g2.

Steps 1, 5 and 6 run batched over the jobs of a batch; steps 2-4 run per image.

An image whose M_g (or aligned M_r*) is empty keeps I_g1, with a warning.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import encode_text
from hifilight.data.images import center_square, list_images, load_rgb, to_pil, to_tensor
from hifilight.data.masks import MaskProvider
from hifilight.errors import HifiError
from hifilight.masking import latent_mask
from hifilight.models import SDComponents
from hifilight.perception import align
from hifilight.perception.align import Alignment, AlignSettings
from hifilight.perception.encoders import ImageEncoder
from hifilight.sampling.ddim import DDIMSchedule, decode_latents, encode_images
from hifilight.sampling.engine import Recorder, SamplingEngine
from hifilight.sampling.generate import Job, conditioning, initial_latents, null_embedding, use_stepwise
from hifilight.sampling.guidance import GuidanceLog, GuidanceSettings, ReferenceGuidance
from hifilight.sampling.inversion import ddim_invert


@dataclass
class SourceSet:
    """The subject's photos at the generation resolution, their masks M_r (1, H, W) and DINO embeddings (N, D)."""

    names: list[str]
    images: list[Image.Image]
    masks: list[Tensor]
    embeddings: Tensor


def load_sources(subject_dir: Path, masks: MaskProvider, resolution: int, encoder: ImageEncoder) -> SourceSet:
    """The subject photos, centre-cropped to resolution x resolution, with masks cropped the same way."""
    paths = list_images(subject_dir)
    images, mask_list = [], []
    for path in paths:
        image = load_rgb(path)
        mask = masks(path, image)[0].numpy().astype("uint8") * 255
        images.append(center_square(image, resolution))
        mask_img = center_square(Image.fromarray(mask), resolution, Image.NEAREST)
        mask_list.append(torch.from_numpy((np.asarray(mask_img) >= 128).astype("float32"))[None])
        if not mask_list[-1].any():
            raise HifiError(f"{path}: its subject mask is empty after cropping; fix the mask or choose --data.masks")
    return SourceSet([p.name for p in paths], images, mask_list, encoder.encode_images(images))


def select_reference(query: Tensor, embeddings: Tensor) -> tuple[int, float]:
    """Index and cosine similarity of the source embedding closest to `query` (Sec. 3.3, "Guided regions")."""
    sims = F.normalize(embeddings.float(), dim=-1) @ F.normalize(query.float().reshape(-1), dim=0)
    k = int(torch.argmax(sims))
    return k, float(sims[k])


@dataclass
class ReferenceRecord:
    """What happened for one job; images are PIL, masks are (1, H, W) {0, 1} tensors at image size."""

    job: Job
    first: Image.Image  # I_g1
    final: Image.Image  # I_g2 (= I_g1 when skipped)
    skipped: str | None = None
    mask_g: Tensor | None = None
    reference: int | None = None
    similarity: float | None = None
    alignment: Alignment | None = None
    aligned_reference: Image.Image | None = None
    mask_r_aligned: Tensor | None = None
    caption: str | None = None
    log: GuidanceLog = field(default_factory=GuidanceLog)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (STAGES), batched ones shared

    def summary(self, sources: SourceSet) -> dict:
        out = {"skipped": self.skipped, "seconds": {k: round(v, 4) for k, v in self.seconds.items()}}
        if self.reference is not None:
            out |= {"reference": sources.names[self.reference], "dino_similarity": self.similarity}
        if self.alignment is not None:
            out |= {"alignment": self.alignment.as_dict(), "caption": self.caption}
        if self.log.before:
            out |= {"eq10_loss_before": _mean(self.log.before), "eq10_loss_after": _mean(self.log.after)}
        return out


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values)


# Where a guided image's time goes: I_g1 up to its decoding, M_g, DINO + the closest source, T_theta (Eq. 8-9,
# Algorithm 4) and warping, the caption, DDIM inversion of I_r*, and the guided re-generation from t_s.
STAGES = ("first", "segmentation", "selection", "alignment", "caption", "inversion", "guided")


class _Clock:
    """Adds the wall time since the last `lap` to each record's `seconds[stage]`, split evenly over `records`
    (stages run as a batch are shared by its images)."""

    def __init__(self):
        self.last = time.perf_counter()

    def lap(self, stage: str, records: Sequence[ReferenceRecord], device: torch.device | None = None) -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        for record in records:
            record.seconds[stage] = record.seconds.get(stage, 0.0) + (now - self.last) / len(records)
        self.last = now


@dataclass
class ReferenceGuide:
    """Everything Algorithm 2 needs besides the base model and the subject."""

    sources: SourceSet
    encoder: ImageEncoder  # DINO
    generated_masks: MaskProvider  # M_g of I_g1
    caption: Callable[[Image.Image], str]  # I_r -> its caption (BLIP-2, the user's, or a fallback)
    guide: GuidanceSettings = field(default_factory=GuidanceSettings)
    align: AlignSettings = field(default_factory=AlignSettings)
    captions: dict[int, str] = field(default_factory=dict)

    def caption_of(self, index: int) -> str:
        if index not in self.captions:
            self.captions[index] = self.caption(self.sources.images[index])
        return self.captions[index]


def reference_guided(
    comps: SDComponents,
    artifact: SubjectArtifact | None,
    jobs: Sequence[Job],
    ref: ReferenceGuide,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int = 512,
    batch_size: int = 4,
    stepwise: bool | None = None,
    progress: bool = True,
) -> list[ReferenceRecord]:
    """Algorithm 2 for every job, `batch_size` jobs at a time: I_g1 as one batch, the mask, reference and alignment
    per image, then the inversion and guided re-generation of the batch's guided images as one batch (each image is
    guided as it would be alone; see `ReferenceGuidance`)."""
    ref.guide.check(steps, guidance)
    per_step = artifact is not None and use_stepwise(artifact, stepwise)
    engine = SamplingEngine(comps.unet, DDIMSchedule.from_scheduler(comps.scheduler, steps))
    start_index = steps - ref.guide.start
    size = resolution // comps.vae_scale_factor
    shape = (1, comps.unet.config.in_channels, size, size)
    phi = null_embedding(comps, artifact)
    records = []
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first : first + batch_size]
        cond, extra = conditioning(comps, artifact, [j.text for j in chunk], per_step)
        x_T = torch.cat([initial_latents(j.seed, shape, comps.unet.device) for j in chunk])
        clock, recorder = _Clock(), Recorder([start_index])
        x_0 = engine.sample(x_T, cond, phi, guidance, callbacks=[recorder, *extra], progress=progress)
        firsts = [to_pil(image) for image in decode_latents(comps.vae, x_0).cpu()]
        chunk_records = [ReferenceRecord(job, image, image) for job, image in zip(chunk, firsts, strict=True)]
        clock.lap("first", chunk_records)
        guided = [g for k, r in enumerate(chunk_records) if (g := _prepare(ref, r, k, (size, size), clock))]
        if guided:
            resume = recorder.latents[start_index][[g.row for g in guided]]
            _regenerate(comps, engine, artifact, ref, guided, phi, resume, start_index, guidance, per_step, clock)
        records += chunk_records
    return records


def _skip(record: ReferenceRecord, why: str) -> None:
    warnings.warn(f"{record.job.text!r} (seed {record.job.seed}): {why}; keeping the unguided image", stacklevel=3)
    record.skipped = why


@dataclass
class _Guided:
    """An image that goes on to steps 5-6: its record, its row in the I_g1 batch, I_r* in [-1, 1] (1, 3, H, W)
    and M_r* at latent size (1, 1, h, w)."""

    record: ReferenceRecord
    row: int
    aligned: Tensor
    mask: Tensor


def _prepare(
    ref: ReferenceGuide, record: ReferenceRecord, row: int, size: tuple[int, int], clock: _Clock
) -> _Guided | None:
    """Steps 2-4 of Algorithm 2 and the caption of step 5 for one image; fills `record`; None when skipped."""
    record.mask_g = ref.generated_masks(Path(f"generated_{record.job.seed}.png"), record.first)
    clock.lap("segmentation", [record])
    if not record.mask_g.any():
        return _skip(record, "the segmenter found no subject in the generated image (empty M_g)")
    query = ref.encoder.encode_images([record.first])[0]
    record.reference, record.similarity = select_reference(query, ref.sources.embeddings)
    clock.lap("selection", [record])
    m_r = ref.sources.masks[record.reference]
    record.alignment = align.align_masks(m_r, record.mask_g, ref.align)
    ref_pixels = to_tensor(ref.sources.images[record.reference])[None]
    aligned = align.apply(ref_pixels, record.alignment, padding="border").clamp(-1, 1)
    record.aligned_reference = to_pil(aligned[0] / 2 + 0.5)
    record.mask_r_aligned = (align.apply(m_r[None], record.alignment)[0] > 0.5).float()
    mask = latent_mask(record.mask_r_aligned[None], size, ref.guide.mask_rule)
    clock.lap("alignment", [record])
    if not mask.any():
        return _skip(record, "the aligned reference mask M_r* covers no latent cell")
    record.caption = ref.caption_of(record.reference)
    clock.lap("caption", [record])
    return _Guided(record, row, aligned, mask)


def _regenerate(
    comps,
    engine,
    artifact,
    ref: ReferenceGuide,
    guided: list[_Guided],
    phi,
    resume,
    start_index,
    guidance,
    per_step,
    clock: _Clock,
) -> None:
    """Steps 5-6 of Algorithm 2 for a batch: DDIM inversion of the I_r* with their captions c_r, then the
    re-generation from x_{t_s} with substitution and Eq. (10) guidance; fills each record's final image and log."""
    records = [g.record for g in guided]
    c_r = encode_text(comps.tokenizer, comps.text_encoder, [r.caption for r in records]).float()
    aligned = torch.cat([g.aligned for g in guided])
    trajectory = ddim_invert(engine, encode_images(comps.vae, aligned).float(), c_r)
    clock.lap("inversion", records, resume.device)
    guide = ReferenceGuidance(trajectory, torch.cat([g.mask for g in guided]).to(resume.device), ref.guide)
    cond, extra = conditioning(comps, artifact, [g.record.job.text for g in guided], per_step)
    x_0 = engine.sample(resume, cond, phi, guidance, callbacks=[*extra, guide], start=start_index)
    finals = decode_latents(comps.vae, x_0).cpu()
    for g, image, log in zip(guided, finals, guide.logs, strict=True):
        g.record.final, g.record.log = to_pil(image), log
    clock.lap("guided", records)


# ---- what `predict --reference_guidance` writes beside each image -------------------------------------------
