"""Training draws keyed by a global sample index, so runs are reproducible and device-count independent.

Sample n of training is drawn from a generator seeded by (seed, n) only: the image (a fresh permutation of the
photos every len(photos) samples), flip, crop window and caption in the data set, the timestep and noise in the
training modules. At global step k with W processes and per-process batch b, process r takes samples
k*W*b + r*b ... + b-1. So W processes with batch b draw exactly the samples of one process with batch W*b, and DDP's
gradient mean equals that process's batch mean; a resumed run continues the same stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


def sample_generator(seed: int, n: int, stream: int = 0) -> torch.Generator:
    """The generator of sample n (`stream` separates independent uses of the same sample, e.g. data vs noise)."""
    return torch.Generator("cpu").manual_seed(((seed * 1_000_003 + n) * 1_009 + stream) % (2**63 - 1))


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for each step from the current global step on, this process's slice of the global sample indices."""

    def __init__(self, batch_size: int, steps: int, position: Callable[[], tuple[int, int, int]]):
        """`position()` -> (first step, rank, world size), read when an epoch starts."""
        self.batch_size, self.steps, self.position = batch_size, steps, position

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        start, rank, world = self.position()
        b = self.batch_size
        for k in range(start, start + self.steps):
            first = (k * world + rank) * b
            yield list(range(first, first + b))


def noise_and_timesteps(
    seed: int, ids: list[int], shape: tuple[int, ...], num_timesteps: int, device, stream: int = 1
) -> tuple:
    """(noise (B, *shape), t (B,)) for these global sample ids: the same sample gets the same draw everywhere."""
    noise, t = [], []
    for n in ids:
        g = sample_generator(seed, int(n), stream)
        t.append(torch.randint(0, num_timesteps, (1,), generator=g))
        noise.append(torch.randn(shape, generator=g))
    return torch.stack(noise).to(device), torch.cat(t).to(device)
