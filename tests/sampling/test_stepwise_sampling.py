"""Eq. (7): per-step embeddings at sampling time."""

import pytest
import torch

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import encode_text, null_tail
from hifilight.errors import HifiError
from hifilight.sampling import DDIMSchedule
from hifilight.sampling.generate import generate, make_jobs
from hifilight.sampling.stepwise import StepwiseEmbeddings


def _artifact(tiny, steps=4, c_s_t=None):
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    c_s = null_tail(phi, 5) + 0.3 * torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    timesteps = DDIMSchedule.from_scheduler(tiny.scheduler, steps).timesteps
    stepwise = c_s.expand(steps, 5, 32).clone() if c_s_t is None else c_s_t
    return SubjectArtifact(c_s=c_s, phi_s=null_tail(phi, 5), metadata={"base_model": "tiny", "class_name": "dog"},
                           c_s_t=stepwise, timesteps=timesteps)  # fmt: skip


def _generate(tiny, art, stepwise, steps=4):
    jobs = make_jobs(["a photo of a {}"], "dog", seed=0, num_images=2)
    return generate(tiny, art, jobs, steps=steps, resolution=32, progress=False, stepwise=stepwise)


def test_equal_stepwise_embeddings_are_bit_identical_to_single_embedding(tiny):
    art = _artifact(tiny)
    assert torch.equal(_generate(tiny, art, stepwise=True), _generate(tiny, art, stepwise=False))


def test_each_step_uses_its_own_embedding(tiny):
    art = _artifact(tiny)
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
    art = _artifact(tiny)
    art.c_s_t = art.timesteps = None
    with pytest.raises(HifiError, match="no step-wise embeddings"):
        _generate(tiny, art, stepwise=True)
    _generate(tiny, art, stepwise=None)  # auto: falls back to c_s
