"""Null-text inversion (Mokady et al.; HiFi Tuner Eq. 4): per-step null embeddings phi_t that make guided DDIM
sampling retrace the inversion pivot [x_0*, ..., x_T*].

Follows the public reference schedule (see docs/generate.md): the conditional prediction is computed once per step
without gradients; the inner loop runs only the unconditional branch forward + backward, combines with CFG, takes one
DDIM step and matches x*_{t-1} (MSE); K = 10 inner steps with early stop at loss < 1e-5 + i * 2e-5; a fresh Adam per
step with lr = 1e-2 * (1 - i / 100); phi warm-started from the previous step's result. Each is a setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from hifilight.conditioning import encode_text
from hifilight.sampling.ddim import DDIMSchedule, decode_latents, encode_images
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepState
from hifilight.sampling.inversion import ddim_invert


@dataclass(frozen=True)
class NullTextSettings:
    """Null-text optimisation schedule.

    Args:
        inner_steps: K, Adam steps per DDIM step (reference: 10).
        learning_rate: Adam learning rate at the first step (reference: 1e-2).
        lr_decay: scale the learning rate by (1 - i / 100) at step i (reference: true).
        early_stop: stop a step's inner loop once its loss < 1e-5 + i * 2e-5 (reference: true).
        warm_start: start phi_t from phi_{t+1}'s result rather than from phi (reference: true).
    """

    inner_steps: int = 10
    learning_rate: float = 1e-2
    lr_decay: bool = True
    early_stop: bool = True
    warm_start: bool = True


@dataclass
class NullTextResult:
    phis: Tensor  # (T, L, D): phi_t for each sampling step, in sampling order
    losses: list[list[float]] = field(default_factory=list)  # inner-loop losses per step


def optimise_null(
    engine: SamplingEngine,
    latents: Tensor,
    timestep: int,
    cond_output: Tensor,
    guidance: float,
    phi: Tensor,
    target: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    steps: int,
    optimizer_for: Callable[[Tensor], torch.optim.Optimizer],
    stop: Callable[[float], bool] | None = None,
) -> tuple[Tensor, list[float]]:
    """Adam on a null embedding so that the guided DDIM step from x_t lands on `target`: Eq. (4) with the MSE,
    Eq. (10) with the masked error. Returns the optimised embedding and the loss of each inner step (taken before
    its update); `stop(loss)` ends the loop early."""
    phi = phi.detach().clone().requires_grad_(True)
    optimizer, losses = optimizer_for(phi), []
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_fn(engine.step_with_null(latents, timestep, cond_output, phi, guidance), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if stop is not None and stop(losses[-1]):
                break
    return phi.detach(), losses


def null_text_inversion(
    engine: SamplingEngine,
    trajectory: list[Tensor],
    cond: Tensor,
    phi: Tensor,
    guidance: float,
    settings: NullTextSettings = NullTextSettings(),
) -> NullTextResult:
    """Optimise phi_t step by step (Eq. 4) so that F^(t)(x_t, c, phi_t) matches x*_{t-1} of `trajectory`."""
    x, current = trajectory[-1], phi.detach().clone()
    phis, losses = [], []
    for i, t in enumerate(engine.schedule.timesteps.tolist()):
        with torch.no_grad():  # computed once per step: it does not depend on phi_t
            out_cond = engine.branch(x, t, cond)
        lr = settings.learning_rate * (1 - i / 100) if settings.lr_decay else settings.learning_rate
        current, step_losses = optimise_null(
            engine,
            x,
            t,
            out_cond,
            guidance,
            current if settings.warm_start else phi,
            trajectory[-2 - i],
            F.mse_loss,
            settings.inner_steps,
            lambda p, lr=lr: torch.optim.Adam([p], lr=lr),
            (lambda loss, i=i: loss < 1e-5 + i * 2e-5) if settings.early_stop else None,
        )
        phis.append(current)
        losses.append(step_losses)
        with torch.no_grad():  # x_{t-1} with the optimised phi_t; the conditional branch is reused, not recomputed
            x = engine.step_with_null(x, t, out_cond, current, guidance)
    return NullTextResult(torch.cat(phis), losses)


class PerStepUncond(StepCallback):
    """Replay with the optimised null embeddings: the unconditional input of step i is phi_i."""

    def __init__(self, phis: Tensor):
        self.phis = phis

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride:
        return StepOverride(uncond=self.phis[state.index : state.index + 1].expand_as(state.uncond))


@dataclass
class PhotoInversion:
    """A photo inverted with its caption: the per-step null embeddings phi_t, the schedule's timesteps, the pivot's
    x_T*, and the decoded replays from x_T* with the plain null text (DDIM inversion alone) and with phi_t."""

    phis: Tensor
    timesteps: Tensor
    x_T: Tensor
    ddim_replay: Tensor
    null_text_replay: Tensor


def invert_photo(comps, photo: Tensor, caption: str, steps: int, guidance: float, settings: NullTextSettings):
    """DDIM inversion of `photo` ([-1, 1], 1x3xHxW) with its caption at guidance 1 (Eq. 3), null-text inversion of
    the pivot (Eq. 4), and both replays at `guidance` (images in [0, 1] on the CPU)."""
    engine = SamplingEngine(comps.unet, DDIMSchedule.from_scheduler(comps.scheduler, steps))
    cond = encode_text(comps.tokenizer, comps.text_encoder, [caption]).float()
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""]).float()
    x0 = encode_images(comps.vae, photo.to(comps.unet.device)).float()
    trajectory = ddim_invert(engine, x0, cond)  # Eq. (3), guidance 1
    result = null_text_inversion(engine, trajectory, cond, phi, guidance, settings)  # Eq. (4)
    plain = decode_latents(comps.vae, engine.sample(trajectory[-1], cond, phi, guidance)).cpu()
    replay = engine.sample(trajectory[-1], cond, phi, guidance, callbacks=[PerStepUncond(result.phis)])
    tuned = decode_latents(comps.vae, replay).cpu()
    x_T = trajectory[-1].cpu().contiguous()
    return PhotoInversion(result.phis.cpu().contiguous(), engine.schedule.timesteps.clone(), x_T, plain, tuned)
