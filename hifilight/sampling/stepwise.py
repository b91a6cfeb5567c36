"""Eq. (7): sample with the step-wise subject embeddings, x_{t-1} = F^(t)(x_t, [c, c_s^t], phi)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from hifilight.conditioning import splice_subject
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepState


def nearest_index(trained: Tensor, timestep: int) -> int:
    """The index of the trained timestep nearest to `timestep` (Eq. 7 when sampling with other steps)."""
    return int(torch.argmin((trained.long().cpu() - int(timestep)).abs()))


class StepwiseEmbeddings(StepCallback):
    """Replaces the conditioning of each step by [c, c_s^t] for that step's timestep t.

    The embeddings were trained for a fixed list of DDIM timesteps. Sampling with another number of steps uses,
    at each step, the embedding of the nearest trained timestep, and warns once (our choice; the paper samples
    with the same 50 steps it trains).
    """

    def __init__(self, c_text: Tensor, c_s_t: Tensor, trained_timesteps: Tensor):
        self.c_text = c_text
        self.c_s_t = c_s_t.to(c_text.device)
        self.trained = trained_timesteps.long().cpu()
        self.warned = False

    def index_for(self, timestep: int) -> int:
        k = nearest_index(self.trained, timestep)
        if int(self.trained[k]) != int(timestep) and not self.warned:
            self.warned = True
            warnings.warn(
                f"the step-wise embeddings were trained for {len(self.trained)} DDIM steps; sampling with another "
                "number of steps uses the nearest trained timestep at each step (sample with "
                f"{len(self.trained)} steps to match them: --steps {len(self.trained)})",
                stacklevel=2,
            )
        return k

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride:
        return StepOverride(cond=splice_subject(self.c_text, self.c_s_t[self.index_for(state.timestep)]))
