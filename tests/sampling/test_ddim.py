import pytest
import torch
from diffusers import DDIMScheduler

from hifilight.models.tiny import sd14_ddim_scheduler
from hifilight.sampling.ddim import DDIMSchedule, add_noise, ddim_transfer, split_prediction, training_target


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_step_matches_diffusers_ddim(prediction_type):
    scheduler = DDIMScheduler.from_config(sd14_ddim_scheduler().config, prediction_type=prediction_type)
    schedule = DDIMSchedule.from_scheduler(scheduler, 10)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t in schedule.timesteps.tolist():
        expected = scheduler.step(out, t, x, eta=0.0).prev_sample
        got = ddim_transfer(x, out, schedule.alpha(t), schedule.alpha(schedule.prev_timestep(t)), prediction_type)
        assert torch.allclose(got, expected, atol=1e-5)


def test_schedule_is_sd14_leading_with_offset():
    schedule = DDIMSchedule.from_scheduler(sd14_ddim_scheduler(), 50)
    assert schedule.timesteps[:3].tolist() == [981, 961, 941] and schedule.timesteps[-1].item() == 1
    assert schedule.alpha(-19) == pytest.approx(schedule.alpha(0))  # set_alpha_to_one=False


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_exact_prediction_recovers_x0_and_transfer_inverts(prediction_type):
    acp = sd14_ddim_scheduler().alphas_cumprod
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    t = torch.tensor([500])
    x_t = add_noise(x0, eps, t, acp)
    target = training_target(x0, eps, t, acp, prediction_type)
    got_eps, got_x0 = split_prediction(target, x_t, float(acp[500]), prediction_type)
    assert torch.allclose(got_x0, x0, atol=1e-4) and torch.allclose(got_eps, eps, atol=1e-4)
    # with the exact model output, moving to t=300 and back to t=500 returns x_t (DDIM is deterministic)
    eps300 = got_eps
    x_300 = ddim_transfer(x_t, target, float(acp[500]), float(acp[300]), prediction_type)
    back = ddim_transfer(
        x_300,
        training_target(x0, eps300, torch.tensor([300]), acp, prediction_type),
        float(acp[300]),
        float(acp[500]),
        prediction_type,
    )
    assert torch.allclose(back, x_t, atol=1e-4)
