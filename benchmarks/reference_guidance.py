"""Reference-guided generation cost (Algorithm 2's loop): our callback (the conditional branch of each guided step
is taken from the ordinary step and reused across the J inner steps; only the unconditional branch runs forward +
backward) vs a straightforward one that runs both CFG branches with gradients at every inner step.

Reports the UNet evaluations and wall time of the whole guided generation for both ("speedup_vs_naive", target
>= 1.5), the largest difference between their final latents, and the guided loop's time per inner step vs one bare
UNet forward + backward ("overhead_ratio", target <= 1.15; the loop's time includes the one no-grad forward per
step that gives x_{t-1} with the final phi_h).

    python -m benchmarks.reference_guidance [--out benchmarks/results/reference_guidance.json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import interleaved_ms, write_report  # noqa: E402
from benchmarks.null_text import Counter  # noqa: E402
from hifilight.conditioning import encode_text  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.sampling import DDIMSchedule, SamplingEngine, StepState  # noqa: E402
from hifilight.sampling.generate import initial_latents  # noqa: E402
from hifilight.sampling.guidance import GuidanceSettings, ReferenceGuidance, masked_sq_error  # noqa: E402
from hifilight.sampling.inversion import ddim_invert  # noqa: E402


class NaiveGuidance(ReferenceGuidance):
    """The same algorithm, recomputing both branches (batched, with gradients) at every inner step and at the end."""

    def _optimise(self, engine, state, out_cond, target, t):
        s = self.settings
        phi_h = self.phi_h.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([phi_h], lr=s.learning_rate)
        with torch.enable_grad():
            for _ in range(s.inner_steps):
                x_prev = engine.step(state.latents, state.timestep, state.cond, phi_h, state.guidance_scale).latents
                loss = masked_sq_error(x_prev, target, self.mask, s.reduction).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.phi_h = phi_h.detach()
        with torch.no_grad():
            return engine.step(state.latents, state.timestep, state.cond, self.phi_h, state.guidance_scale).latents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--start", type=int, default=8)
    parser.add_argument("--end", type=int, default=3)
    parser.add_argument("--inner_steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference_guidance.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    comps = load_components("tiny-quarter")
    counter = Counter(comps.unet)
    engine = SamplingEngine(counter, DDIMSchedule.from_scheduler(comps.scheduler, args.steps))
    cond = encode_text(comps.tokenizer, comps.text_encoder, ["a photo of a dog"]).float()
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""]).float()
    x_T = initial_latents(0, (1, 4, 32, 32), "cpu")
    trajectory = ddim_invert(engine, initial_latents(1, (1, 4, 32, 32), "cpu") * 0.5, cond)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 6:22] = 1
    settings = GuidanceSettings(start=args.start, end=args.end, inner_steps=args.inner_steps)

    def run(cls):
        counter.calls = 0
        guide = cls(trajectory, mask, settings)
        start = time.perf_counter()
        out = engine.sample(x_T, cond, phi, 7.5, callbacks=[guide])
        return out, time.perf_counter() - start, counter.calls

    ours, seconds, calls = run(ReferenceGuidance)
    naive, seconds_naive, calls_naive = run(NaiveGuidance)

    # per inner step: one guided step's optimisation (J inner steps + the final forward) vs J bare fwd+bwd
    guide = ReferenceGuidance(trajectory, mask, settings)
    guide.phi_h = phi.clone()
    t_index = args.steps - args.start
    x_t, t = trajectory[args.start], int(engine.schedule.timesteps[t_index])
    state = StepState(t_index, t, args.steps, x_t, cond, phi, 7.5)
    out_cond = comps.unet(x_t, t, encoder_hidden_states=cond).sample.detach()
    target = trajectory[args.start - 1]
    context = phi.clone().requires_grad_(True)
    noise = torch.randn_like(x_t)

    def bare_steps():
        for _ in range(args.inner_steps):
            context.grad = None
            pred = comps.unet(x_t, t, encoder_hidden_states=context).sample
            torch.nn.functional.mse_loss(pred, noise).backward()

    loop_ms, bare_ms = interleaved_ms(
        [lambda: guide._optimise(engine, state, out_cond, target, args.start), bare_steps], args.repeats, warmup=1
    )
    results = {
        "unet": "tiny-quarter (57 M params), 32x32 latent",
        "steps": args.steps,
        "start": args.start,
        "end": args.end,
        "inner_steps": args.inner_steps,
        "seconds": round(seconds, 2),
        "seconds_naive": round(seconds_naive, 2),
        "unet_evaluations": calls,
        "unet_evaluations_naive": calls_naive,
        "speedup_vs_naive": round(seconds_naive / seconds, 3),
        "max_abs_diff_final_latents": float((ours - naive).abs().max()),
        "inner_step_ms": round(loop_ms["min"] / args.inner_steps, 1),
        "bare_unet_fwd_bwd_ms": round(bare_ms["min"] / args.inner_steps, 1),
        "overhead_ratio": round(loop_ms["min"] / bare_ms["min"], 3),
    }
    write_report("reference_guidance", args.out, args.threads, results, target_speedup=1.5, target_overhead=1.15)


if __name__ == "__main__":
    main()
