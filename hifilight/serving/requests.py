"""What a request may ask for: the bounds every request is held to, reference guidance as a request states it,
and the errors a request gets (400, 404, 413, 499)."""

from __future__ import annotations

from dataclasses import dataclass

from hifilight.limits import LIMITS

# The request bounds that do not depend on settings (the service's column of the one table in hifilight.limits), for
# the HTTP layer (serve/service.py) and validate.
MAX_STEPS = int(LIMITS["steps"].ceiling(served=True))
MAX_GUIDANCE = float(LIMITS["guidance"].ceiling(served=True))
MAX_SEED = int(LIMITS["seed"].ceiling(served=True))


@dataclass(frozen=True)
class GuideRequest:
    """Reference guidance as a request asks for it: t_s and t_e (DDIM steps, T = first; None: the paper's 40 and 10
    of 50, scaled to the request's steps) and J, Adam steps per guided step (paper: 10)."""

    start: int | None = None
    end: int | None = None
    inner_steps: int = 10

    def settings(self, steps: int, max_inner_steps: int):
        """GuidanceSettings for `steps` DDIM steps; RequestError naming the field when out of bounds."""
        from hifilight.sampling.guidance import GuidanceSettings

        start = self.start if self.start is not None else max(1, round(steps * 0.8))
        end = self.end if self.end is not None else max(1, round(steps * 0.2))
        settings = GuidanceSettings(start=start, end=end, inner_steps=self.inner_steps)
        try:
            settings.check_window(steps, REQUEST_NAMES)
        except ValueError as err:
            raise RequestError(str(err)) from None
        if not 0 <= self.inner_steps <= max_inner_steps:
            raise RequestError(f"guide_inner_steps must be in 0..{max_inner_steps}, got {self.inner_steps}")
        return settings


# how a guidance error names the settings in a request (the CLI names its flags: guidance.FLAG_NAMES)
REQUEST_NAMES = {"start": "guide_start", "end": "guide_end", "start_word": "guide_start", "end_word": "guide_end",
                 "steps": "steps"}  # fmt: skip


class RequestError(ValueError):
    """A bad request: `status` is 400 (invalid value), 404 (unknown subject) or 413 (more work than allowed)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Cancelled(RequestError):
    """The client went away; nothing is sent back (499: client closed the request)."""

    def __init__(self):
        super().__init__("the client closed the request; generation stopped", status=499)
