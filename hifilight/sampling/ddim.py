"""DDIM math as small pure functions over an explicit schedule.

Notation follows HiFi Tuner Sec. 3.1: Eq. (1) is the guided DDIM step F^(t)(x_t, c, phi) and Eq. (3) its inverse
F^{-1}(x_t, c). Both are the same deterministic transfer between two noise levels (DDIM, Song et al., Eq. 12 with
eta = 0), so sampling and inversion share `ddim_transfer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class DDIMSchedule:
    """The sampling timesteps and cumulative alphas of a DDIM run of `num_steps` steps."""

    timesteps: Tensor  # (num_steps,) long, descending: t_T ... t_1
    alphas_cumprod: Tensor  # (num_train_timesteps,) float64 on CPU
    final_alpha_cumprod: float  # alpha used "after" the last step (set_alpha_to_one=False -> alphas_cumprod[0])
    step_ratio: int  # num_train_timesteps // num_steps: the gap between consecutive DDIM timesteps
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler: DDIMScheduler, num_steps: int) -> DDIMSchedule:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if scheduler.config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {scheduler.config.prediction_type!r} is not one of {PREDICTION_TYPES}")
        scheduler.set_timesteps(num_steps)  # diffusers owns timestep spacing (leading + steps_offset for SD1.x)
        return cls(
            timesteps=scheduler.timesteps.clone().long(),
            alphas_cumprod=scheduler.alphas_cumprod.double().cpu(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
            step_ratio=scheduler.config.num_train_timesteps // num_steps,
            prediction_type=scheduler.config.prediction_type,
        )

    def alpha(self, t: int) -> float:
        """alpha_bar_t; a negative t (one step past the end) gives the final alpha."""
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def prev_timestep(self, t: int) -> int:
        return t - self.step_ratio


def cfg_combine(out_uncond: Tensor, out_cond: Tensor, guidance: float) -> Tensor:
    """Classifier-free guidance, Eq. (1): w * eps(x_t, c) + (1 - w) * eps(x_t, phi)."""
    return out_uncond + guidance * (out_cond - out_uncond)


def split_prediction(model_out: Tensor, x_t: Tensor, alpha_t: float, prediction_type: str) -> tuple[Tensor, Tensor]:
    """Return (eps, x0_hat) from a model output of the given prediction type at noise level alpha_t."""
    a, s = alpha_t**0.5, (1 - alpha_t) ** 0.5
    if prediction_type == "epsilon":
        eps = model_out
        return eps, (x_t - s * eps) / a
    if prediction_type == "v_prediction":
        return a * model_out + s * x_t, a * x_t - s * model_out
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")


def ddim_transfer(x: Tensor, model_out: Tensor, alpha_from: float, alpha_to: float, prediction_type: str) -> Tensor:
    """Deterministic DDIM move from noise level alpha_from to alpha_to (eta = 0).

    alpha_to > alpha_from denoises (Eq. 1, sampling); alpha_to < alpha_from inverts (Eq. 3).
    x_to = sqrt(alpha_to) * x0_hat + sqrt(1 - alpha_to) * eps.
    """
    eps, x0 = split_prediction(model_out, x, alpha_from, prediction_type)
    return alpha_to**0.5 * x0 + (1 - alpha_to) ** 0.5 * eps


def add_noise(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """The forward process N_s(x_0, eps, t) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (per sample t)."""
    a = alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def training_target(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor, prediction_type: str) -> Tensor:
    """What the UNet is trained to predict: eps (epsilon models) or v = sqrt(a) eps - sqrt(1-a) x0 (SD2.x)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")


@torch.no_grad()
def decode_latents(vae, latents: Tensor) -> Tensor:
    """VAE decode to images in [0, 1], shape (B, 3, H, W)."""
    images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def encode_images(vae, pixels: Tensor) -> Tensor:
    """VAE encode images in [-1, 1] to scaled latents (posterior mean, as null-text inversion's reference does)."""
    posterior = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
    return posterior.mean * vae.config.scaling_factor
