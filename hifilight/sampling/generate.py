"""Text-to-image generation with a learned subject: [c, c_s] conditioning (Sec. 3.2) through the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import check_room, encode_text, null_tail, splice_subject
from hifilight.errors import HifiError
from hifilight.models import SDComponents
from hifilight.models.sdxl import architecture
from hifilight.prompts import render
from hifilight.sampling.ddim import DDIMSchedule, decode_latents
from hifilight.sampling.engine import SamplingEngine, StepCallback
from hifilight.sampling.stepwise import StepwiseEmbeddings


@dataclass(frozen=True)
class Job:
    """One image to make: the prompt as given, its rendered text, and the seed of its x_T."""

    prompt: str
    text: str
    seed: int


def initial_latents(seed: int, shape: tuple[int, ...], device, dtype=torch.float32) -> Tensor:
    """x_T ~ N(0, I) from a CPU generator, as diffusers does, so a seed gives the same image on any device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=dtype).to(device)


def make_jobs(prompts: Sequence[str], class_name: str, seed: int, num_images: int) -> list[Job]:
    if not prompts:
        raise HifiError(
            "--prompts is empty; pass at least one prompt, e.g. --prompts '[\"a photo of a {} on a beach\"]'"
        )
    if num_images < 1:
        raise HifiError(f"--num_images must be >= 1, got {num_images}")
    return [Job(p, render(p, class_name), seed + i) for p in prompts for i in range(num_images)]


def prepare_subject(comps: SDComponents, artifact: SubjectArtifact) -> Tensor:
    """Check that the artifact fits this base model; return phi, the null-text embedding (1, L, D)."""
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""]).float()
    artifact.check_compatible(
        comps.name, comps.text_hidden_size, null_tail(phi, artifact.num_tokens), architecture(comps)
    )
    return phi


def encode_prompts(comps: SDComponents, artifact: SubjectArtifact, texts: list[str]) -> Tensor:
    """c for each text, after checking it leaves the last n rows to the subject."""
    for text in texts:
        check_room(comps.tokenizer, text, artifact.num_tokens)
    return encode_text(comps.tokenizer, comps.text_encoder, texts).float()


def null_embedding(comps: SDComponents, artifact: SubjectArtifact | None) -> Tensor:
    """phi (1, L, D); with an artifact, after checking that it fits this base model."""
    if artifact is not None:
        return prepare_subject(comps, artifact)
    return encode_text(comps.tokenizer, comps.text_encoder, [""]).float()


def conditioning(
    comps: SDComponents, artifact: SubjectArtifact | None, texts: list[str], per_step: bool
) -> tuple[Tensor, list[StepCallback]]:
    """The conditioning of `texts` and the callbacks it needs: [c, c_s] (+ c_s^t per step, Eq. 7) with an
    artifact; plain c without one (base model, Textual Inversion tokens, DreamBooth)."""
    if artifact is None:
        return encode_text(comps.tokenizer, comps.text_encoder, texts).float(), []
    c = encode_prompts(comps, artifact, texts)
    extra = [StepwiseEmbeddings(c, artifact.c_s_t, artifact.timesteps)] if per_step else []
    return splice_subject(c, artifact.c_s.to(c.device)), extra


def use_stepwise(artifact: SubjectArtifact, stepwise: bool | None) -> bool:
    """None = use the step-wise embeddings when the artifact has them."""
    if stepwise and artifact.c_s_t is None:
        raise HifiError(
            "--stepwise true: this subject artifact has no step-wise embeddings; fit it with --model.stepwise_steps "
            "> 0, or pass --stepwise false to sample with c_s"
        )
    return artifact.c_s_t is not None if stepwise is None else stepwise


def generate(
    comps: SDComponents,
    artifact: SubjectArtifact | None,
    jobs: list[Job],
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int | tuple[int, int] = 512,
    batch_size: int = 4,
    callbacks: Sequence[StepCallback] = (),
    progress: bool = True,
    stepwise: bool | None = None,
) -> Tensor:
    """Images in [0, 1], (len(jobs), 3, H, W), in job order; `resolution` is the side or (height, width).

    With step-wise embeddings (`stepwise`, default: when the artifact has them) each step uses [c, c_s^t]
    (Eq. 7); otherwise every step uses [c, c_s]. Without an artifact, the base model alone (c).
    """
    per_step = artifact is not None and use_stepwise(artifact, stepwise)
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if height % comps.vae_scale_factor or width % comps.vae_scale_factor:
        raise HifiError(f"--resolution must be a multiple of {comps.vae_scale_factor}, got {resolution}")
    device = comps.unet.device
    engine = SamplingEngine(comps.unet, DDIMSchedule.from_scheduler(comps.scheduler, steps))
    f = comps.vae_scale_factor
    shape = (1, comps.unet.config.in_channels, height // f, width // f)
    phi = null_embedding(comps, artifact)
    images = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        cond, extra = conditioning(comps, artifact, [j.text for j in chunk], per_step)
        x_T = torch.cat([initial_latents(j.seed, shape, device) for j in chunk])
        x_0 = engine.sample(x_T, cond, phi, guidance, callbacks=[*extra, *callbacks], progress=progress)
        images.append(decode_latents(comps.vae, x_0).cpu())
    return torch.cat(images)
