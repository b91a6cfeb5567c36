"""Algorithm 2's generation loop as one engine callback: latent substitution at t_s and masked null-text guidance
(Eq. 10) for t_s >= t >= t_e.

Steps are counted as in the paper: t = T for the first (noisiest) DDIM step down to t = 1 for the last, so step
index i of the engine is t = T - i, x_t is `trajectory[t]` of `ddim_invert` and the Eq. (10) target x*_{t-1} is
`trajectory[t - 1]`.

Per guided step the conditional prediction eps(x_t, [c, c_s^t]) does not depend on phi_h: it is taken from the
engine's ordinary step (which already computed it in its batched call) and reused across the J inner steps, so
each inner step runs only the unconditional branch forward + backward. After the J steps one more unconditional
forward (no grad) gives x_{t-1} with the final phi_h, which is also the "after" value of the loss.

Choices the paper leaves open (settings): a fresh Adam per step (`reset_optimizer`, as null-text inversion's
reference does) and the Eq. (10) loss as the mean over masked entries (`reduction`; "sum" is the literal squared
norm, which Adam, nearly scale-invariant, treats alike up to its epsilon).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hifilight.masking import BINARY_RULES
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepResult, StepState
from hifilight.sampling.null_text import optimise_null

# how a guidance error names the settings on the command line (the service names its request fields)
FLAG_NAMES = {"start": "--reference.guide.start", "end": "--reference.guide.end", "start_word": "start",
              "end_word": "end", "steps": "--steps"}  # fmt: skip


@dataclass(frozen=True)
class GuidanceSettings:
    """Reference guidance (Algorithm 2; paper: T = 50, t_s = 40, t_e = 10, J = 10, Adam lr 1e-2).

    Args:
        start: t_s, the DDIM step (T = first, 1 = last) where subject latents are substituted and guidance starts.
        end: t_e, the last guided DDIM step (1 <= end <= start <= T).
        inner_steps: J, Adam steps on phi_h per guided step (0 = substitution only).
        learning_rate: Adam learning rate for phi_h.
        substitute: replace x_t[M_r*] by x_t*[M_r*] at t_s.
        reset_optimizer: a fresh Adam state at each guided step (phi_h itself is always carried over).
        reduction: "mean" or "sum" of the squared errors over the masked entries in Eq. (10).
        mask_rule: how the aligned reference mask M_r* becomes the latent mask of lines 4 and 9 and Eq. (10):
            "area" (cells at least half subject) or "touched" (every cell it touches); see hifilight.masking.
    """

    start: int = 40
    end: int = 10
    inner_steps: int = 10
    learning_rate: float = 1e-2
    substitute: bool = True
    reset_optimizer: bool = True
    reduction: str = "mean"
    mask_rule: str = "area"

    def check(self, num_steps: int, guidance: float) -> None:
        """Raise ValueError naming the flag when these settings cannot run with `num_steps` DDIM steps."""
        self.check_window(num_steps)
        if self.inner_steps < 0:
            raise ValueError(f"--reference.guide.inner_steps must be >= 0, got {self.inner_steps}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"--reference.guide.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.mask_rule not in BINARY_RULES:
            raise ValueError(
                f"--reference.guide.mask_rule must be one of {', '.join(BINARY_RULES)}, got {self.mask_rule!r}"
            )
        if self.inner_steps and guidance == 1.0:
            raise ValueError(
                "reference guidance optimises the null embedding, which guidance 1 ignores; use --guidance > 1 "
                "or --reference.guide.inner_steps 0"
            )

    def check_window(self, num_steps: int, names: dict[str, str] = FLAG_NAMES) -> None:
        """ValueError unless 1 <= t_e <= t_s <= T, naming the settings as `names` says (CLI flags or request fields)."""
        if not 1 <= self.end <= self.start <= num_steps:
            raise ValueError(
                f"{names['start']} {self.start} / {names['end']} {self.end}: need 1 <= {names['end_word']} <= "
                f"{names['start_word']} <= {names['steps']} ({num_steps}); the paper uses start 40, end 10 with 50 "
                "steps"
            )


def masked_sq_error(x: Tensor, target: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """||target[M] - x[M]||^2 (Eq. 10) per image, shape (B,); `mask` (B, 1, h, w) in {0, 1} broadcasts over
    channels. "mean" divides each image's sum by its own masked entries, so a batch's summed loss gives every image
    the gradient it would get alone."""
    sq = ((x - target) ** 2 * mask).flatten(1).sum(1)
    return sq / (mask.flatten(1).sum(1) * x.shape[1]).clamp(min=1) if reduction == "mean" else sq


@dataclass
class GuidanceLog:
    """Eq. (10) loss before and after the inner steps, per guided step t."""

    before: dict[int, float] = field(default_factory=dict)
    after: dict[int, float] = field(default_factory=dict)


class ReferenceGuidance(StepCallback):
    """Algorithm 2 lines 2-9 for a batch of B images, each with its own trajectory row, mask and phi_h row. Put it
    after the callback that sets [c, c_s^t] (`StepwiseEmbeddings`).

    The images do not interact: the UNet treats batch rows independently, Adam is elementwise and the optimised loss
    is the sum of the per-image Eq. (10) losses, so each image gets what it would get guided alone (up to floating
    point summation order); `logs[k]` is image k's.
    """

    def __init__(self, trajectory: list[Tensor], mask: Tensor, settings: GuidanceSettings):
        self.trajectory, self.settings = trajectory, settings
        self.mask = (mask > 0.5).to(trajectory[0].dtype)
        self.phi_h: Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.logs = [GuidanceLog() for _ in range(mask.shape[0])]

    def t_of(self, state: StepState) -> int:
        return state.num_steps - state.index

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride | None:
        if self.t_of(state) != self.settings.start:
            return None
        self.phi_h = state.uncond.detach().clone()  # Algorithm 2 line 3: phi_h = phi
        if not self.settings.substitute:
            return None
        x_ref = self.trajectory[self.settings.start].to(state.latents)
        return StepOverride(latents=torch.where(self.mask.bool(), x_ref, state.latents))  # line 4

    def on_step_end(self, state: StepState, result: StepResult, engine: SamplingEngine) -> Tensor | None:
        t, s = self.t_of(state), self.settings
        if not (s.end <= t <= s.start) or s.inner_steps == 0:
            return None
        out_cond = result.cond_output
        if out_cond is None:  # guidance 1 was refused in check(); this only happens when called directly
            raise ValueError("ReferenceGuidance needs guidance != 1")
        target = self.trajectory[t - 1].to(state.latents)
        x_prev_h = self._optimise(engine, state, out_cond, target, t)
        return torch.where(self.mask.bool(), x_prev_h, result.latents)  # line 9

    def _adam(self, phi_h: Tensor) -> torch.optim.Optimizer:
        """A fresh Adam (`reset_optimizer`), or the previous step's moments moved onto the carried-over tensor."""
        if self.optimizer is None or self.settings.reset_optimizer:
            self.optimizer = torch.optim.Adam([phi_h], lr=self.settings.learning_rate)
        else:
            self.optimizer.param_groups[0]["params"] = [phi_h]
            self.optimizer.state = {phi_h: next(iter(self.optimizer.state.values()))} if self.optimizer.state else {}
        return self.optimizer

    def _optimise(self, engine, state: StepState, out_cond: Tensor, target: Tensor, t: int) -> Tensor:
        s = self.settings

        before: list[Tensor] = []

        def loss_fn(x: Tensor, y: Tensor) -> Tensor:
            per_image = masked_sq_error(x, y, self.mask, s.reduction)
            if not before:
                before.append(per_image.detach())
            return per_image.sum()

        x_t, step, w = state.latents, state.timestep, state.guidance_scale
        self.phi_h, _ = optimise_null(
            engine, x_t, step, out_cond, w, self.phi_h, target, loss_fn, s.inner_steps, self._adam
        )  # lines 6-8
        with torch.no_grad():
            x_prev_h = engine.step_with_null(x_t, step, out_cond, self.phi_h, w)
            after = masked_sq_error(x_prev_h, target, self.mask, s.reduction)
        for log, b, a in zip(self.logs, before[0].tolist(), after.tolist(), strict=True):
            log.before[t], log.after[t] = b, a
        return x_prev_h
