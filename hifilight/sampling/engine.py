"""The sampling engine: runs the DDIM loop and lets typed callbacks steer each step.

Contract (later features are callbacks, not forks of the loop):
- Before a step, each callback sees a frozen `StepState` and may return a `StepOverride` that replaces the step's
  latents and/or conditioning (e.g. per-step subject embeddings, Eq. 7; latent substitution, Algorithm 2).
  Overrides compose in callback order: each callback sees the state left by the ones before it.
- After a step, each callback sees the state and the `StepResult` and may return new latents for x_{t-1}
  (e.g. masked blending of an optimised step, Algorithm 2, or attention bookkeeping).
- A callback may run its own optimisation inside a step by calling `engine.step(...)` under
  `torch.enable_grad()`; the engine itself runs without gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from tqdm.auto import tqdm

from hifilight.sampling.ddim import DDIMSchedule, cfg_combine, ddim_transfer


@dataclass(frozen=True)
class StepState:
    """What a callback sees at step `index` (0 = first, noisiest step) of a `num_steps` run."""

    index: int
    timestep: int
    num_steps: int
    latents: Tensor  # x_t
    cond: Tensor  # c (or [c, c_s]), (B, L, D)
    uncond: Tensor  # phi, (B, L, D)
    guidance_scale: float


@dataclass(frozen=True)
class StepOverride:
    """What a callback may change before a step. Only these fields are overridable; None keeps the current one."""

    latents: Tensor | None = None
    cond: Tensor | None = None
    uncond: Tensor | None = None


OVERRIDABLE = tuple(f.name for f in fields(StepOverride))


@dataclass(frozen=True)
class StepResult:
    """The outcome of one guided DDIM step: x_{t-1} and the guided model output used to get it."""

    latents: Tensor  # x_{t-1}
    model_output: Tensor
    cond_output: Tensor | None = None  # the conditional branch eps(x_t, c) alone, when guidance != 1


class StepCallback:
    """Base class for engine callbacks; override what you need. Both hooks may return None to change nothing."""

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride | None:
        return None

    def on_step_end(self, state: StepState, result: StepResult, engine: SamplingEngine) -> Tensor | None:
        return None


def apply_override(state: StepState, override: StepOverride | None) -> StepState:
    if override is None:
        return state
    changes = {name: getattr(override, name) for name in OVERRIDABLE if getattr(override, name) is not None}
    return replace(state, **changes) if changes else state


class SamplingEngine:
    """Guided DDIM sampling (Eq. 1) with a UNet and an explicit schedule."""

    def __init__(self, unet, schedule: DDIMSchedule):
        self.unet = unet
        self.schedule = schedule

    def model_output(self, latents: Tensor, timestep: int, cond: Tensor, uncond: Tensor, guidance: float) -> Tensor:
        """eps_theta (or v) combined with classifier-free guidance; one batched UNet call like diffusers."""
        return self.model_branches(latents, timestep, cond, uncond, guidance)[0]

    def model_branches(
        self, latents: Tensor, timestep: int, cond: Tensor, uncond: Tensor, guidance: float
    ) -> tuple[Tensor, Tensor | None]:
        """(guided output, conditional branch or None when guidance == 1)."""
        if guidance == 1.0:
            return self.branch(latents, timestep, cond), None
        dtype = self.unet.dtype
        x_in = torch.cat([latents, latents]).to(dtype)
        context = torch.cat([uncond, cond]).to(dtype)
        out_uncond, out_cond = self.unet(x_in, timestep, encoder_hidden_states=context).sample.chunk(2)
        return cfg_combine(out_uncond, out_cond, guidance).to(latents.dtype), out_cond.to(latents.dtype)

    def branch(self, latents: Tensor, timestep: int, context: Tensor) -> Tensor:
        """One UNet call for one conditioning (a single CFG branch), returned in the latents' dtype."""
        dtype = self.unet.dtype
        out = self.unet(latents.to(dtype), timestep, encoder_hidden_states=context.to(dtype)).sample
        return out.to(latents.dtype)

    def step_with_null(
        self, latents: Tensor, timestep: int, cond_output: Tensor, uncond: Tensor, guidance: float
    ) -> Tensor:
        """x_{t-1} for a known conditional branch and a given (possibly trainable) null embedding: the
        unconditional branch, CFG and the DDIM move. What null-text inversion (Eq. 4) and reference guidance
        (Eq. 10) differentiate through, the conditional branch being independent of the null embedding."""
        out = cfg_combine(self.branch(latents, timestep, uncond), cond_output.to(latents.dtype), guidance)
        return self.transfer(latents, out, timestep)

    def transfer(self, latents: Tensor, model_output: Tensor, timestep: int) -> Tensor:
        """The DDIM move of Eq. (1) from timestep t to the previous DDIM timestep, given the model output."""
        s = self.schedule
        return ddim_transfer(
            latents, model_output, s.alpha(timestep), s.alpha(s.prev_timestep(timestep)), s.prediction_type
        )

    def step(self, latents: Tensor, timestep: int, cond: Tensor, uncond: Tensor, guidance: float) -> StepResult:
        """F^(t)(x_t, c, phi) of Eq. (1): one guided DDIM step from timestep t to the previous DDIM timestep."""
        out, out_cond = self.model_branches(latents, timestep, cond, uncond, guidance)
        return StepResult(latents=self.transfer(latents, out, timestep), model_output=out, cond_output=out_cond)

    @torch.no_grad()
    def sample(
        self,
        latents: Tensor,
        cond: Tensor,
        uncond: Tensor,
        guidance: float,
        callbacks: Sequence[StepCallback] = (),
        progress: bool = False,
        start: int = 0,
    ) -> Tensor:
        """Denoise x_T to x_0. `cond`/`uncond` are (B, L, D) (or (1, L, D), broadcast to the batch).

        `start` > 0 resumes a run: `latents` are then the x_t of step index `start` (e.g. recorded by `Recorder`).
        """
        batch = latents.shape[0]
        cond, uncond = _expand(cond, batch), _expand(uncond, batch)
        num_steps = len(self.schedule.timesteps)
        timesteps = self.schedule.timesteps.tolist()[start:]
        for index, t in enumerate(tqdm(timesteps, disable=not progress, desc="sampling"), start=start):
            state = StepState(index, t, num_steps, latents, cond, uncond, guidance)
            for cb in callbacks:
                state = apply_override(state, cb.on_step_begin(state, self))
            result = self.step(state.latents, t, state.cond, state.uncond, guidance)
            for cb in callbacks:
                new = cb.on_step_end(state, result, self)
                if new is not None:
                    result = replace(result, latents=new)
            latents = result.latents
        return latents


class Recorder(StepCallback):
    """Keeps x_t (before any later callback changes it) at the given step indices, in `latents[index]`."""

    def __init__(self, indices: Sequence[int]):
        self.indices = set(indices)
        self.latents: dict[int, Tensor] = {}

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> None:
        if state.index in self.indices:
            self.latents[state.index] = state.latents.clone()


def _expand(x: Tensor, batch: int) -> Tensor:
    return x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 and batch > 1 else x


class SamplingStopped(Exception):
    """Sampling was asked to stop (`StopWhenSet`)."""


class StopWhenSet(StepCallback):
    """An engine callback that ends sampling at the next step once `event` is set (every one of `events`: a batch
    stops when all its clients have gone), raising `error()` (the service raises its 499 Cancelled)."""

    def __init__(
        self,
        event: threading.Event | None = None,
        events: list[threading.Event] | None = None,
        error: type[Exception] = SamplingStopped,
    ):
        self.events = [event] if event is not None else list(events or [])
        self.error = error

    def check(self) -> None:
        if self.events and all(e.is_set() for e in self.events):
            raise self.error()

    def on_step_begin(self, state, engine) -> None:
        self.check()
