"""DDIM step math (pure functions) and the callback-driven sampling engine."""

from hifilight.sampling.ddim import DDIMSchedule, add_noise, cfg_combine, ddim_transfer, training_target
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepResult, StepState

__all__ = [
    "DDIMSchedule",
    "SamplingEngine",
    "StepCallback",
    "StepOverride",
    "StepResult",
    "StepState",
    "add_noise",
    "cfg_combine",
    "ddim_transfer",
    "training_target",
]
