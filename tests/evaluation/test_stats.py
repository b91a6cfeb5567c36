import numpy as np
import pytest

from hifilight.evaluation.stats import bootstrap_ci, verdict


def test_interval_of_a_known_sample_matches_a_direct_resampling():
    values = [0.1, 0.4, -0.2, 0.3, 0.0, 0.5, 0.2, -0.1]
    low, high = bootstrap_ci(values, resamples=4000, seed=3)
    # the same resampling written out directly: draw n values with replacement, take the mean
    draws = np.random.default_rng(3).integers(0, len(values), size=(4000, len(values)))
    means = np.asarray(values)[draws].mean(1)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert low < np.mean(values) < high


def test_clusters_are_resampled_whole():
    # two subjects with two seeds each: resampling subjects gives only the means 0, 1 and 0.5
    low, high = bootstrap_ci([0.0, 0.0, 1.0, 1.0], clusters=["a", "a", "b", "b"], resamples=2000)
    assert (low, high) == (0.0, 1.0)
    assert bootstrap_ci([0.4, 0.6], clusters=["a", "a"]) == pytest.approx((0.5, 0.5))  # one cluster: no spread


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="2 values but 1 cluster keys"):
        bootstrap_ci([1.0, 2.0], clusters=["a"])


@pytest.mark.parametrize(("low", "high", "word"), [(0.01, 0.2, "helps"), (-0.3, -0.1, "hurts"), (-0.1, 0.1, "no")])
def test_verdict_reads_the_interval(low, high, word):
    assert verdict(low, high).startswith(word)
