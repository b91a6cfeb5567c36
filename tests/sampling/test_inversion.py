"""DDIM inversion (Eq. 3) against diffusers' DDIMInverseScheduler, and its round trip through sampling."""

from types import SimpleNamespace

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


class _Damped(torch.nn.Module):
    """The tiny UNet's prediction scaled by k: a random network whose output varies slowly along the trajectory,
    like a trained one's (the undamped random UNet's prediction jumps between noise levels)."""

    def __init__(self, unet, k):
        super().__init__()
        self.unet, self.k, self.dtype = unet, k, unet.dtype

    def forward(self, x, t, encoder_hidden_states=None):
        out = self.unet(x, t, encoder_hidden_states=encoder_hidden_states).sample
        return SimpleNamespace(sample=self.k * out)


def test_inversion_then_sampling_returns_close_to_the_start_and_converges_with_steps(tiny):
    """Guidance 1, same conditioning. Measured relative errors (k = 0.1): 0.048 at 10 steps, 0.020 at 50."""
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"]).float()
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = {}
    for steps in (10, 50):
        engine = SamplingEngine(_Damped(tiny.unet, 0.1), DDIMSchedule.from_scheduler(tiny.scheduler, steps))
        back = engine.sample(ddim_invert(engine, x0, cond)[-1], cond, cond, 1.0)
        errors[steps] = float((back - x0).norm() / x0.norm())
    assert errors[50] < 0.03
    assert errors[50] < errors[10] / 2
