"""Eq. (7): per-step embeddings at sampling time."""

import pytest
import torch
from conftest import make_artifact

from hifilight.errors import HifiError
from hifilight.sampling.generate import generate, make_jobs
from hifilight.sampling.stepwise import StepwiseEmbeddings


def _generate(tiny, art, stepwise, steps=4):
    jobs = make_jobs(["a photo of a {}"], "dog", seed=0, num_images=2)
    return generate(tiny, art, jobs, steps=steps, resolution=32, progress=False, stepwise=stepwise)


def test_equal_stepwise_embeddings_are_bit_identical_to_single_embedding(tiny):
    art = make_artifact(tiny)
    assert torch.equal(_generate(tiny, art, stepwise=True), _generate(tiny, art, stepwise=False))


def test_each_step_uses_its_own_embedding(tiny):
    art = make_artifact(tiny)
    base = _generate(tiny, art, stepwise=True)
    changed = art.c_s_t.clone()
    changed[3] += 1.0  # only the last step (t = 1) differs
    art.c_s_t = changed
    assert not torch.equal(_generate(tiny, art, stepwise=True), base)


def test_other_step_counts_use_the_nearest_trained_timestep_and_warn_once(tiny):
    trained = torch.tensor([751, 501, 251, 1])
    cb = StepwiseEmbeddings(torch.zeros(1, 77, 32), torch.arange(4.0).view(4, 1, 1).expand(4, 5, 32), trained)
    assert cb.index_for(501) == 1
    with pytest.warns(UserWarning, match="nearest trained timestep") as record:
        assert [cb.index_for(t) for t in (981, 700, 260, 120, 2)] == [0, 0, 2, 3, 3]
    assert len(record) == 1


def test_stepwise_requested_on_a_plain_artifact_is_refused(tiny):
    art = make_artifact(tiny)
    art.c_s_t = art.timesteps = None
    with pytest.raises(HifiError, match="no step-wise embeddings"):
        _generate(tiny, art, stepwise=True)
    _generate(tiny, art, stepwise=None)  # auto: falls back to c_s
