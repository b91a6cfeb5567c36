"""Null-text inversion (Mokady et al.; HiFi Tuner Eq. 4): per-step null embeddings phi_t that make guided DDIM
sampling retrace the inversion pivot [x_0*, ..., x_T*].

Follows the public reference schedule (see docs/generate.md): the conditional prediction is computed once per step
without gradients; the inner loop runs only the unconditional branch forward + backward, combines with CFG, takes one
DDIM step and matches x*_{t-1} (MSE); K = 10 inner steps with early stop at loss < 1e-5 + i * 2e-5; a fresh Adam per
step with lr = 1e-2 * (1 - i / 100); phi warm-started from the previous step's result. Each is a setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from hifilight.sampling.ddim import cfg_combine, ddim_transfer
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepState


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


def null_text_inversion(
    engine: SamplingEngine, trajectory: list[Tensor], cond: Tensor, phi: Tensor, guidance: float,
    settings: NullTextSettings = NullTextSettings(),
) -> NullTextResult:  # fmt: skip
    """Optimise phi_t step by step (Eq. 4) so that F^(t)(x_t, c, phi_t) matches x*_{t-1} of `trajectory`."""
    s, unet = engine.schedule, engine.unet
    x, current = trajectory[-1], phi.detach().clone()
    phis, losses = [], []
    for i, t in enumerate(s.timesteps.tolist()):
        target = trajectory[-2 - i]
        alphas = (s.alpha(t), s.alpha(s.prev_timestep(t)))
        with torch.no_grad():
            out_cond = unet(x.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample.float()
        start = current if settings.warm_start else phi.detach().clone()
        phi_t = start.clone().requires_grad_(True)
        lr = settings.learning_rate * (1 - i / 100) if settings.lr_decay else settings.learning_rate
        optimizer = torch.optim.Adam([phi_t], lr=lr)
        step_losses = []
        for _ in range(settings.inner_steps):
            with torch.enable_grad():
                out_uncond = unet(x.to(unet.dtype), t, encoder_hidden_states=phi_t.to(unet.dtype)).sample.float()
                x_prev = ddim_transfer(x, cfg_combine(out_uncond, out_cond, guidance), *alphas, s.prediction_type)
                loss = F.mse_loss(x_prev, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item())
            if settings.early_stop and step_losses[-1] < 1e-5 + i * 2e-5:
                break
        current = phi_t.detach()
        phis.append(current)
        losses.append(step_losses)
        with torch.no_grad():  # x_{t-1} with the optimised phi_t; the conditional branch is reused, not recomputed
            out_uncond = unet(x.to(unet.dtype), t, encoder_hidden_states=current.to(unet.dtype)).sample.float()
            x = ddim_transfer(x, cfg_combine(out_uncond, out_cond, guidance), *alphas, s.prediction_type)
    return NullTextResult(torch.cat(phis), losses)


class PerStepUncond(StepCallback):
    """Replay with the optimised null embeddings: the unconditional input of step i is phi_i."""

    def __init__(self, phis: Tensor):
        self.phis = phis

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride:
        return StepOverride(uncond=self.phis[state.index : state.index + 1].expand_as(state.uncond))
