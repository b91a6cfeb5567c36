"""The DreamBooth fit profile's arithmetic: generation, fixed costs and a step from three timed fits."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks: a package at the repository root

from benchmarks.toyworld_fits import summary  # noqa: E402


def test_the_profile_splits_fit_times_into_generation_fixed_costs_and_steps():
    seconds = {"first": 30.0, "cached": 20.0, "one_step": 2.0, "text_encoder_cached": 23.0,
               "text_encoder_one_step": 2.0, "no_prior_cached": 11.0, "no_prior_one_step": 2.0}  # fmt: skip
    result = summary(seconds, steps=10, bare_ms=1000.0, bare_half_ms=500.0)
    assert result["class_image_generation_s"] == 10.0 and result["fixed_costs_s"] == 2.0
    assert result["step_ms"] == 2000.0 and result["step_over_bare"] == 2.0  # (20 - 2) s over 9 steps
    assert result["step_text_encoder_over_step"] == pytest.approx(21 / 18, abs=1e-3)
    assert result["step_ms_no_prior"] == 1000.0 and result["step_no_prior_over_bare_instances"] == 2.0
