"""Bookkeeping of Algorithm 1 (step-wise subject representations, Sec. 3.2).

Training runs as one sequence of optimizer steps: `stage1_steps` steps of stage 1 (one c_s for all timesteps),
then for each DDIM timestep t = T..1 (noisiest first) `steps_per_timestep` (I) steps that optimise c_s^t, which
starts from c_s^{t+1} (c_s^{T+1} = c_s). A global step number therefore says exactly where training is, which is
what makes Lightning's checkpoint/resume land on the right timestep.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepwisePlan:
    stage1_steps: int
    steps_per_timestep: int  # I (0 = no step-wise stage)
    timesteps: tuple[int, ...]  # DDIM timesteps in sampling order, t_T ... t_1

    @property
    def enabled(self) -> bool:
        return self.steps_per_timestep > 0

    @property
    def stepwise_steps(self) -> int:
        return len(self.timesteps) * self.steps_per_timestep if self.enabled else 0

    @property
    def total_steps(self) -> int:
        return self.stage1_steps + self.stepwise_steps

    def locate(self, global_step: int) -> tuple[int, int] | None:
        """None during stage 1; else (k, i): timestep index k (0 = t_T) and inner step i in [0, I)."""
        j = global_step - self.stage1_steps
        if j < 0 or not self.enabled:
            return None
        if j >= self.stepwise_steps:
            raise ValueError(f"step {global_step} is past the end of training ({self.total_steps} steps)")
        return divmod(j, self.steps_per_timestep)

    def describe(self, global_step: int) -> str:
        """Where step `global_step` (0-based, the next to run) is, for a progress bar: "stage 1 120/1000" or
        "step-wise t=781 3/10"."""
        where = self.locate(min(global_step, self.total_steps - 1)) if self.total_steps else None
        if where is None:
            return f"stage 1 {min(global_step, self.stage1_steps)}/{self.stage1_steps}"
        k, i = where
        return f"step-wise t={self.timesteps[k]} {i}/{self.steps_per_timestep}"


def total_steps(stage1_steps: int, stepwise_steps: int, stepwise_num_steps: int) -> int:
    """Trainer.max_steps for a run (linked from the model's flags by the fit CLI)."""
    return stage1_steps + (stepwise_steps * stepwise_num_steps if stepwise_steps > 0 else 0)
