"""Algorithm 2's loop (substitution at t_s, Eq. 10 guidance until t_e) as an engine callback, on the tiny UNet."""

import pytest
import torch

from hifilight.conditioning import encode_text
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.engine import Recorder
from hifilight.sampling.guidance import GuidanceSettings, ReferenceGuidance, masked_sq_error
from hifilight.sampling.inversion import ddim_invert

STEPS = 8


@pytest.fixture(scope="module")
def setup(tiny):
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, STEPS))
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 4, 8, 8, generator=g)
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"]).float()
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""]).float()
    trajectory = ddim_invert(engine, torch.randn(1, 4, 8, 8, generator=g), cond)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:5] = 1
    return engine, x_T, cond, phi, trajectory, mask


def _run(setup, settings, *extra):
    engine, x_T, cond, phi, trajectory, mask = setup
    guide = ReferenceGuidance(trajectory, mask, settings)
    return engine.sample(x_T, cond, phi, 7.5, callbacks=[guide, *extra]), guide


def test_no_optimisation_and_no_substitution_is_plain_sampling(setup):
    engine, x_T, cond, phi, *_ = setup
    out, _ = _run(setup, GuidanceSettings(start=6, end=2, inner_steps=0, substitute=False))
    assert torch.equal(out, engine.sample(x_T, cond, phi, 7.5))


def test_substitution_puts_the_reference_latents_under_the_mask_at_t_s(setup):
    engine, x_T, cond, phi, trajectory, mask = setup
    plain = Recorder([STEPS - 6])
    engine.sample(x_T, cond, phi, 7.5, callbacks=[plain])
    seen = Recorder([STEPS - 6])  # after the guidance callback: sees the substituted latents
    _run(setup, GuidanceSettings(start=6, end=2, inner_steps=0), seen)
    x_ts, m = seen.latents[STEPS - 6], mask.bool().expand(1, 4, 8, 8)
    assert torch.equal(x_ts[m], trajectory[6][m])
    assert torch.equal(x_ts[~m], plain.latents[STEPS - 6][~m])


def test_inner_steps_lower_the_eq10_loss_at_every_guided_step(setup):
    out, guide = _run(setup, GuidanceSettings(start=6, end=2, inner_steps=3))
    assert sorted(guide.logs[0].before) == [2, 3, 4, 5, 6]
    for t in guide.logs[0].before:
        assert guide.logs[0].after[t] < guide.logs[0].before[t], t
    assert torch.isfinite(out).all()


def test_guidance_changes_only_the_masked_latents_of_its_step(setup):
    """One guided step: x_{t-1} outside M_r* is the ordinary step's, inside it is the phi_h step's."""
    engine, x_T, cond, phi, trajectory, mask = setup
    settings = GuidanceSettings(start=STEPS, end=STEPS, inner_steps=2, substitute=False)
    guide = ReferenceGuidance(trajectory, mask, settings)
    first = Recorder([1])
    engine.sample(x_T, cond, phi, 7.5, callbacks=[guide, first])
    plain = Recorder([1])
    engine.sample(x_T, cond, phi, 7.5, callbacks=[plain])
    m = mask.bool().expand(1, 4, 8, 8)
    assert torch.equal(first.latents[1][~m], plain.latents[1][~m])
    assert not torch.allclose(first.latents[1][m], plain.latents[1][m])
    assert not torch.equal(guide.phi_h, phi)  # phi_h moved away from phi


def test_phi_h_starts_from_phi_at_t_s_and_is_carried_over(setup, monkeypatch):
    starts, ends = {}, {}
    original = ReferenceGuidance._optimise

    def spy(self, engine, state, out_cond, target, t):
        starts[t] = self.phi_h.clone()
        result = original(self, engine, state, out_cond, target, t)
        ends[t] = self.phi_h.clone()
        return result

    monkeypatch.setattr(ReferenceGuidance, "_optimise", spy)
    _run(setup, GuidanceSettings(start=6, end=4, inner_steps=2))
    assert torch.equal(starts[6], setup[3])  # Algorithm 2 line 3: phi_h = phi at t_s
    assert torch.equal(starts[5], ends[6]) and torch.equal(starts[4], ends[5])
    assert not torch.equal(ends[6], starts[6])


@pytest.mark.parametrize(
    ("settings", "guidance", "match"),
    [
        (GuidanceSettings(start=10, end=20), 7.5, "end <= start"),
        (GuidanceSettings(start=60, end=10), 7.5, "<= --steps"),
        (GuidanceSettings(start=40, end=0), 7.5, "1 <= end"),
        (GuidanceSettings(inner_steps=-1), 7.5, "inner_steps"),
        (GuidanceSettings(reduction="max"), 7.5, "reduction"),
        (GuidanceSettings(mask_rule="soft"), 7.5, "--reference.guide.mask_rule must be one of area, touched"),
        (GuidanceSettings(), 1.0, "guidance 1"),
    ],
)
def test_bad_settings_name_the_flag(settings, guidance, match):
    with pytest.raises(ValueError, match=match):
        settings.check(50, guidance)


def test_masked_error_reductions():
    x, target = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert masked_sq_error(x, target, mask, "sum").item() == 2.0  # one cell x two channels
    assert masked_sq_error(x, target, mask, "mean").item() == 1.0


def test_masked_error_is_per_image_with_each_images_own_mask_count():
    x, target = torch.zeros(2, 2, 2, 2), torch.ones(2, 2, 2, 2)
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = 1  # one cell
    mask[1, 0] = 1  # four cells
    assert masked_sq_error(x, target, mask, "sum").tolist() == [2.0, 8.0]
    assert masked_sq_error(x, target, mask, "mean").tolist() == [1.0, 1.0]


@pytest.mark.parametrize("reset", [True, False])
def test_a_batch_is_guided_as_each_image_alone(setup, reset):
    """Two images with their own trajectories and masks in one batch = each guided on its own (Adam elementwise,
    the summed loss's gradient per row = that image's own)."""
    engine, x_T, cond, phi, trajectory, mask = setup
    g = torch.Generator().manual_seed(1)
    x_T2 = torch.randn(1, 4, 8, 8, generator=g)
    trajectory2 = ddim_invert(engine, torch.randn(1, 4, 8, 8, generator=g), cond)
    mask2 = torch.zeros(1, 1, 8, 8)
    mask2[..., 0:3, 3:8] = 1
    settings = GuidanceSettings(start=6, end=3, inner_steps=2, reset_optimizer=reset)
    alone = []
    for x, traj, m in [(x_T, trajectory, mask), (x_T2, trajectory2, mask2)]:
        guide = ReferenceGuidance(traj, m, settings)
        alone.append((engine.sample(x, cond, phi, 7.5, callbacks=[guide]), guide.logs[0]))
    both = ReferenceGuidance(
        [torch.cat(pair) for pair in zip(trajectory, trajectory2, strict=True)], torch.cat([mask, mask2]), settings
    )
    out = engine.sample(torch.cat([x_T, x_T2]), cond, phi, 7.5, callbacks=[both])
    for k, (image, log) in enumerate(alone):
        torch.testing.assert_close(out[k : k + 1], image, atol=1e-4, rtol=1e-3)  # batched conv sums
        assert log.before == pytest.approx(both.logs[k].before, rel=1e-4)
        assert log.after == pytest.approx(both.logs[k].after, rel=1e-4)
    assert alone[0][0].sub(alone[1][0]).abs().max() > 0.1  # the two images really differ
