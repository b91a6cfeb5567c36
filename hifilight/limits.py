"""The numeric limits of what a command or a service request may ask for, in one table.

Each entry holds the range every command accepts (checked after parsing, before any model loads: generation beyond
these sizes is not a use case on any GPU we know) and, where the service is stricter, the upper bound a request
gets (a service must not let one client hold the model for long). The CLI (`hifilight.commands.common`) and the
service (`hifilight.serving.requests`, serve/service.py's field bounds) read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    low: float
    high: float
    served: float | None = None  # the service's upper bound, where it is lower than `high`
    multiple_of: int | None = None  # pixel sizes: the VAE's factor

    def ceiling(self, served: bool = False) -> float:
        return self.served if served and self.served is not None else self.high

    def problem(self, value: float, served: bool = False) -> str | None:
        """What is wrong with `value` ("must be in 1..100"), or None when it is within the limit."""
        high = self.ceiling(served)
        if not self.low <= value <= high:  # also NaN, which no comparison holds for
            return f"must be in {self.low}..{high}"
        if self.multiple_of and value % self.multiple_of:
            return f"must be a multiple of {self.multiple_of}"
        return None


LIMITS: dict[str, Limit] = {
    "steps": Limit(1, 1000, served=100),
    "guidance": Limit(0.0, 100.0, served=30.0),
    "seed": Limit(0, 2**63 - 1, served=2**31 - 1),
    "seeds": Limit(0, 2**63 - 1),
    "num_images": Limit(1, 10_000),
    "images_per_prompt": Limit(1, 1000),
    "batch_size": Limit(1, 4096),
    "resolution": Limit(8, 4096, multiple_of=8),
    "size": Limit(16, 4096, multiple_of=8),
    "photos": Limit(1, 8),
    "devices": Limit(1, 1024),
    "threads": Limit(0, 1024),
}
