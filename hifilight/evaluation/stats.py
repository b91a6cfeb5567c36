"""Paired differences with bootstrap confidence intervals, and the verdict a reviewer reads from them.

An ablation step compares two rows on the same units (seed x subject: the same x_T, photos and prompts), so the
statistic is the mean of the per-unit differences. Units of one subject under different seeds are not independent
(a subject that is hard for one seed is hard for all), so the resampling is clustered: a bootstrap sample draws
subjects with replacement and keeps all of each drawn subject's units. The interval is the percentile interval of
the resampled means.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10000


def bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values`, resampling whole `clusters` (default: each value
    its own cluster). Seeded, so a table is reproducible; one value (or one cluster) gives a zero-width interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    keys = list(range(x.size)) if clusters is None else list(clusters)
    if len(keys) != x.size:
        raise ValueError(f"bootstrap_ci: {x.size} values but {len(keys)} cluster keys")
    names = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(names)}
    member = np.array([index[k] for k in keys])
    sums = np.bincount(member, weights=x, minlength=len(names))
    counts = np.bincount(member, minlength=len(names)).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    weights = np.zeros((resamples, len(names)))  # how often each cluster is drawn in each resample
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    means = (weights @ sums) / (weights @ counts)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def verdict(low: float, high: float) -> str:
    """What an interval of a difference (after - before, higher is better) says about the technique."""
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "no measurable effect"
