"""Loss terms of Eq. (2), (5) and (6): the denoising loss every LightningModule trains with (HiFi Tuner's subject
embedding, Textual Inversion, DreamBooth, LoRA), its masked form and the regulariser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from hifilight.sampling.ddim import add_noise, training_target

Normalization = Literal["mask", "all"]


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None, normalization: Normalization = "mask") -> Tensor:
    """Eq. (5): || M * (eps_theta - eps) ||^2, averaged.

    The paper writes a squared norm and leaves the normalisation open. We offer:
      - "mask" (default): per sample, the sum over subject elements divided by the number of subject elements
        (mask pixels x channels), then the batch mean. A small subject gets the same loss scale as a large one,
        and with a full mask this equals the usual `F.mse_loss` of Eq. (2).
      - "all": the mean over all elements of M * (pred - target)^2 (kohya sd-scripts' --masked_loss); the loss
        shrinks with the subject's area.
    Pixels outside the mask contribute nothing to either the value or the gradient.
    """
    sq = (pred.float() - target.float()) ** 2
    if mask is None:
        return sq.mean()
    mask = mask.to(sq.dtype).expand_as(sq)
    masked = sq * mask
    if normalization == "all":
        return masked.mean()
    if normalization == "mask":
        per_sample = masked.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)
        return per_sample.mean()
    raise ValueError(f"normalization must be 'mask' or 'all', got {normalization!r}")


def embedding_regularizer(c_s: Tensor, phi_s: Tensor) -> Tensor:
    """Eq. (6)'s second term without its weight: ||c_s - phi_s||_2^2 (sum of squares over all n x d entries)."""
    return ((c_s.float() - phi_s.float()) ** 2).sum()


def denoising_loss(
    unet,
    latents: Tensor,
    noise: Tensor,
    timesteps: Tensor,
    cond: Tensor,
    alphas_cumprod: Tensor,
    prediction_type: str,
    mask: Tensor | None = None,
    normalization: Normalization = "mask",
) -> Tensor:
    """Eq. (2) / Eq. (5): x_t = N(x_0, eps, t), the UNet's prediction given the conditioning `cond`, and its
    (masked) squared error against the scheduler's target (eps, or v for v-prediction models). The one training
    step of every fit method; `mask` None is the plain mean (= F.mse_loss)."""
    x_t = add_noise(latents, noise, timesteps, alphas_cumprod)
    pred = unet(x_t.to(unet.dtype), timesteps, encoder_hidden_states=cond.to(unet.dtype)).sample
    target = training_target(latents, noise, timesteps, alphas_cumprod, prediction_type)
    return masked_mse(pred, target, mask, normalization)


@dataclass(frozen=True)
class Batch:
    """One part of a joint denoising step: clean latents, their noise and timesteps, conditioning, optional mask."""

    latents: Tensor
    noise: Tensor
    timesteps: Tensor
    cond: Tensor
    mask: Tensor | None = None


def joint_denoising_losses(
    unet, parts: list[Batch], alphas_cumprod: Tensor, prediction_type: str, normalization: Normalization = "mask"
) -> list[Tensor]:
    """`denoising_loss` of each part, from one UNet call on all parts stacked (DreamBooth's instance and prior
    batches: one batch of 2B runs faster than two of B, and diffusers' DreamBooth example stacks them too). Each
    part's loss is its own mean, as if computed alone; the values equal the separate calls' up to the rounding of
    another batch size."""
    x_t = torch.cat([add_noise(p.latents, p.noise, p.timesteps, alphas_cumprod) for p in parts])
    timesteps = torch.cat([p.timesteps for p in parts])
    cond = torch.cat([p.cond for p in parts])
    pred = unet(x_t.to(unet.dtype), timesteps, encoder_hidden_states=cond.to(unet.dtype)).sample
    losses, start = [], 0
    for p in parts:
        n = p.latents.shape[0]
        target = training_target(p.latents, p.noise, p.timesteps, alphas_cumprod, prediction_type)
        losses.append(masked_mse(pred[start : start + n], target, p.mask, normalization))
        start += n
    return losses
