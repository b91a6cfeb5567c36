import torch
from conftest import sd_pipeline

from hifilight.conditioning import encode_text
from hifilight.sampling import DDIMSchedule, SamplingEngine, StepCallback, StepOverride
from hifilight.sampling.ddim import decode_latents
from hifilight.sampling.generate import initial_latents


def _setup(tiny, steps=8):
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, steps))
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    return engine, cond, phi, initial_latents(3, (1, 4, 8, 8), "cpu")


def test_engine_matches_diffusers_pipeline(tiny):
    pipe = sd_pipeline(**tiny.__dict__)
    expected = pipe(
        "a photo of a dog",
        num_inference_steps=10,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
        output_type="pt",
    ).images
    engine, cond, phi, x_T = _setup(tiny, steps=10)
    got = decode_latents(tiny.vae, engine.sample(x_T, cond, phi, 7.5))
    assert (got - expected).abs().max() < 1e-4


class Recorder(StepCallback):
    def __init__(self):
        self.seen = []

    def on_step_begin(self, state, engine):
        self.seen.append((state.index, state.timestep, state.num_steps))


class SwapCond(StepCallback):
    def __init__(self, cond, at):
        self.cond, self.at = cond, at

    def on_step_begin(self, state, engine):
        return StepOverride(cond=self.cond) if state.index in self.at else None


def test_callbacks_see_every_step_in_order(tiny):
    engine, cond, phi, x_T = _setup(tiny)
    rec = Recorder()
    engine.sample(x_T, cond, phi, 7.5, callbacks=[rec])
    assert [s[0] for s in rec.seen] == list(range(8))
    assert [s[1] for s in rec.seen] == engine.schedule.timesteps.tolist()


def test_identity_override_is_bit_identical(tiny):
    engine, cond, phi, x_T = _setup(tiny)
    plain = engine.sample(x_T, cond, phi, 7.5)
    swapped = engine.sample(x_T, cond, phi, 7.5, callbacks=[SwapCond(cond.clone(), at=range(8))])
    assert torch.equal(plain, swapped)


def test_cond_override_changes_only_from_its_step(tiny):
    engine, cond, phi, x_T = _setup(tiny)
    other = encode_text(tiny.tokenizer, tiny.text_encoder, ["a red car"])
    plain = engine.sample(x_T, other, phi, 7.5)
    switched = engine.sample(x_T, cond, phi, 7.5, callbacks=[SwapCond(other, at=range(8))])
    assert torch.equal(plain, switched)
    late = engine.sample(x_T, cond, phi, 7.5, callbacks=[SwapCond(other, at=[7])])
    assert not torch.equal(late, plain)


def test_overrides_compose_in_order(tiny):
    engine, cond, phi, x_T = _setup(tiny)
    other = encode_text(tiny.tokenizer, tiny.text_encoder, ["a red car"])
    later_wins = engine.sample(x_T, phi, phi, 7.5, callbacks=[SwapCond(cond, range(8)), SwapCond(other, range(8))])
    assert torch.equal(later_wins, engine.sample(x_T, other, phi, 7.5))


def test_step_end_can_edit_latents_and_run_its_own_optimisation(tiny):
    engine, cond, phi, x_T = _setup(tiny)

    class OptimiseUncond(StepCallback):
        """Like Algorithm 2's inner loop: optimise phi_h inside a step, then use its result."""

        def __init__(self):
            self.losses = []

        def on_step_end(self, state, result, engine):
            if state.index != 3:
                return None
            target = torch.zeros_like(result.latents)
            phi_h = state.uncond.clone().requires_grad_(True)
            opt = torch.optim.Adam([phi_h], lr=0.1)
            with torch.enable_grad():
                for _ in range(3):
                    opt.zero_grad()
                    out = engine.step(state.latents, state.timestep, state.cond, phi_h, state.guidance_scale)
                    loss = (out.latents - target).pow(2).mean()
                    loss.backward()
                    opt.step()
                    self.losses.append(loss.item())
            return engine.step(state.latents, state.timestep, state.cond, phi_h.detach(), 7.5).latents

    cb = OptimiseUncond()
    plain = engine.sample(x_T, cond, phi, 7.5)
    edited = engine.sample(x_T, cond, phi, 7.5, callbacks=[cb])
    assert len(cb.losses) == 3 and cb.losses[-1] < cb.losses[0]
    assert not torch.equal(plain, edited)
