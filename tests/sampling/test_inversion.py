"""DDIM inversion (Eq. 3) against diffusers' DDIMInverseScheduler, and its round trip through sampling."""

import pytest
import torch
from conftest import ConstantNoiseUNet
from diffusers import DDIMInverseScheduler, DDIMScheduler

from hifilight.conditioning import encode_text
from hifilight.models.tiny import sd14_ddim_scheduler
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.generate import initial_latents
from hifilight.sampling.inversion import ddim_invert


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inversion_matches_diffusers_inverse_scheduler(tiny, prediction_type):
    config = DDIMScheduler.from_config(sd14_ddim_scheduler().config, prediction_type=prediction_type).config
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(DDIMScheduler.from_config(config), 10))
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    x0 = initial_latents(0, (1, 4, 8, 8), "cpu") * 0.5
    ours = ddim_invert(engine, x0, cond)

    inverse = DDIMInverseScheduler.from_config(config)
    inverse.set_timesteps(10)
    x, expected = x0, [x0]
    with torch.no_grad():
        for t in inverse.timesteps:
            out = tiny.unet(x, t, encoder_hidden_states=cond).sample
            x = inverse.step(out, t, x).prev_sample
            expected.append(x)
    assert inverse.timesteps.tolist() == list(reversed(engine.schedule.timesteps.tolist()))
    assert len(ours) == 11 and torch.equal(ours[0], x0)
    for a, b in zip(ours, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_when_the_noise_prediction_is_constant_inversion_then_sampling_is_the_identity():
    schedule = DDIMSchedule.from_scheduler(sd14_ddim_scheduler(), 50)
    x0, eps = initial_latents(1, (1, 4, 8, 8), "cpu") * 0.5, initial_latents(2, (1, 4, 8, 8), "cpu")
    engine = SamplingEngine(ConstantNoiseUNet(eps), schedule)
    cond = torch.zeros(1, 77, 8)
    trajectory = ddim_invert(engine, x0, cond)
    # every x_k* = sqrt(a_k) z + sqrt(1 - a_k) eps for one clean z: the forward process of Eq. (3)
    levels = [schedule.final_alpha_cumprod] + [schedule.alpha(t) for t in reversed(schedule.timesteps.tolist())]
    clean = [(x - (1 - a) ** 0.5 * eps) / a**0.5 for x, a in zip(trajectory, levels, strict=True)]
    assert all(torch.allclose(z, clean[0], atol=1e-4) for z in clean)
    assert torch.allclose(engine.sample(trajectory[-1], cond, cond, 1.0), x0, atol=1e-4)


def test_guided_inversion_needs_the_unconditional_embedding(tiny):
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, 5))
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    with pytest.raises(ValueError, match="needs `uncond`"):
        ddim_invert(engine, torch.zeros(1, 4, 8, 8), cond, guidance=7.5)
