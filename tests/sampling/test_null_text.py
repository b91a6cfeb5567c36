"""Null-text inversion (Eq. 4): it beats plain DDIM inversion, follows the reference schedule's switches, replays."""

import json

import pytest
import torch
from conftest import EXAMPLE_SUBJECT, ConstantNoiseUNet
from diffusers import DDIMScheduler
from safetensors import safe_open

from hifilight.cli import main
from hifilight.conditioning import encode_text
from hifilight.models.tiny import sd14_ddim_scheduler
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.generate import initial_latents
from hifilight.sampling.inversion import ddim_invert
from hifilight.sampling.null_text import NullTextSettings, PerStepUncond, null_text_inversion


@pytest.fixture
def setup(tiny):
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, 10))
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    x0 = initial_latents(0, (1, 4, 8, 8), "cpu") * 0.5
    return engine, cond, phi, x0, ddim_invert(engine, x0, cond)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_null_text_replay_retraces_the_pivot_better_than_plain_ddim(setup, tiny, prediction_type):
    engine, cond, phi, x0, trajectory = setup
    if prediction_type == "v_prediction":  # SD2.x-style models (the reference code only handled epsilon)
        scheduler = DDIMScheduler.from_config(sd14_ddim_scheduler().config, prediction_type=prediction_type)
        engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(scheduler, 10))
        trajectory = ddim_invert(engine, x0, cond)
    result = null_text_inversion(engine, trajectory, cond, phi, 7.5, NullTextSettings(learning_rate=0.1))
    assert result.phis.shape == (10, 77, 32) and len(result.losses) == 10
    assert all(steps[-1] < steps[0] for steps in result.losses)  # each inner loop lowers Eq. (4)
    plain = engine.sample(trajectory[-1], cond, phi, 7.5)
    replay = engine.sample(trajectory[-1], cond, phi, 7.5, callbacks=[PerStepUncond(result.phis)])
    assert (replay - x0).pow(2).mean() < 0.2 * (plain - x0).pow(2).mean()


def test_replay_with_unchanged_null_embeddings_is_plain_sampling(setup):
    engine, cond, phi, _, trajectory = setup
    same = phi.expand(10, -1, -1)
    plain = engine.sample(trajectory[-1], cond, phi, 7.5)
    assert torch.equal(engine.sample(trajectory[-1], cond, phi, 7.5, callbacks=[PerStepUncond(same)]), plain)


def test_exact_pivot_stops_each_step_at_once():
    schedule = DDIMSchedule.from_scheduler(sd14_ddim_scheduler(), 10)
    engine = SamplingEngine(ConstantNoiseUNet(initial_latents(2, (1, 4, 8, 8), "cpu")), schedule)
    cond, phi = torch.zeros(1, 77, 8), torch.ones(1, 77, 8)
    trajectory = ddim_invert(engine, initial_latents(1, (1, 4, 8, 8), "cpu"), cond)
    result = null_text_inversion(engine, trajectory, cond, phi, 7.5)
    assert [len(steps) for steps in result.losses] == [1] * 10  # loss ~0 < 1e-5 + i * 2e-5: early stop
    kept = null_text_inversion(engine, trajectory, cond, phi, 7.5, NullTextSettings(early_stop=False))
    assert [len(steps) for steps in kept.losses] == [10] * 10


def test_warm_start_switch(setup):
    engine, cond, phi, _, trajectory = setup
    cold = null_text_inversion(
        engine, trajectory, cond, phi, 7.5, NullTextSettings(inner_steps=1, learning_rate=0.05, warm_start=False)
    )
    warm = null_text_inversion(engine, trajectory, cond, phi, 7.5, NullTextSettings(inner_steps=1, learning_rate=0.05))
    # one Adam step moves every entry by about lr: cold starts stay near phi, warm starts drift step after step
    assert (cold.phis[-1] - phi[0]).abs().max() < 0.06
    assert (warm.phis[-1] - phi[0]).abs().max() > 0.1


def test_invert_command(tmp_path, capsys):
    out = tmp_path / "inv"
    args = [
        "invert",
        "--image",
        str(EXAMPLE_SUBJECT / "00.jpg"),
        "--caption",
        "a photo of a dog",
        "--out",
        str(out),
        "--steps",
        "4",
        "--resolution",
        "64",
        "--null_text.inner_steps",
        "2",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "reconstruction PSNR: DDIM inversion" in printed and "null-text inversion" in printed
    with safe_open(str(out / "null_text.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["hifilight"])
        assert f.get_tensor("phi_t").shape == (4, 77, 32) and f.get_tensor("timesteps").tolist() == [751, 501, 251, 1]
    assert meta["caption"] == "a photo of a dog" and meta["null_text"]["inner_steps"] == 2
    assert (out / "reconstruction.png").is_file() and (out / "ddim_reconstruction.png").is_file()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["invert", "--image", str(tmp_path / "none.jpg"), "--caption", "x", "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
