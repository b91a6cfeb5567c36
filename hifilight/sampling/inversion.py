"""DDIM inversion, Eq. (3): x_{t+1} = F^{-1}(x_t, c), the pivot trajectory of null-text inversion.

Shared by reference-guided generation (Algorithm 2 inverts the aligned reference image) and subject replacement
(Algorithm 3 inverts the input photo). It walks the sampling schedule backwards with the same `ddim_transfer` as
sampling: from the noise level of t - step_ratio up to that of t, with the model evaluated at timestep t, as the
null-text inversion reference and diffusers' `DDIMInverseScheduler` do.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hifilight.sampling.ddim import ddim_transfer
from hifilight.sampling.engine import SamplingEngine


@torch.no_grad()
def ddim_invert(
    engine: SamplingEngine, x0: Tensor, cond: Tensor, uncond: Tensor | None = None, guidance: float = 1.0
) -> list[Tensor]:
    """The trajectory [x_0*, x_1*, ..., x_T*]: entry k is at the noise level of the k-th timestep from the end.

    Guidance 1 (the default, as in the paper and the reference) uses the conditional prediction only; with another
    weight `uncond` is required and the step uses classifier-free guidance.
    """
    if guidance != 1.0 and uncond is None:
        raise ValueError("ddim_invert: guidance != 1 needs `uncond`")
    s = engine.schedule
    trajectory, x = [x0], x0
    for t in reversed(s.timesteps.tolist()):
        out = engine.model_output(x, t, cond, uncond if uncond is not None else cond, guidance)
        x = ddim_transfer(x, out, s.alpha(s.prev_timestep(t)), s.alpha(t), s.prediction_type)
        trajectory.append(x)
    return trajectory
