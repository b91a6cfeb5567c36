"""Null-text inversion cost: our loop (conditional branch cached per step, only the unconditional branch in the
inner loop) vs a straightforward loop that runs both CFG branches at every inner step, at equal settings.

Both optimise the same objective with the same schedule (early stop off, so both do K inner steps), so their
reconstructions should match; the JSON reports both MSEs next to the speedup.

    python -m benchmarks.null_text [--out benchmarks/results/null_text.json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import write_report  # noqa: E402
from hifilight.conditioning import encode_text  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.sampling import DDIMSchedule, SamplingEngine  # noqa: E402
from hifilight.sampling.ddim import cfg_combine, ddim_transfer  # noqa: E402
from hifilight.sampling.generate import initial_latents  # noqa: E402
from hifilight.sampling.inversion import ddim_invert  # noqa: E402
from hifilight.sampling.null_text import NullTextSettings, PerStepUncond, null_text_inversion  # noqa: E402


class Counter(torch.nn.Module):
    """Counts UNet evaluations (one per batch row)."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.calls, self.dtype = unet, 0, unet.dtype

    def forward(self, x, t, encoder_hidden_states=None):
        self.calls += x.shape[0]
        return self.unet(x, t, encoder_hidden_states=encoder_hidden_states)


def naive_null_text(engine, trajectory, cond, phi, guidance, settings):
    """Both CFG branches in one batch at every inner step, gradients through the batch."""
    s, unet, x, current, phis = engine.schedule, engine.unet, trajectory[-1], phi.clone(), []
    for i, t in enumerate(s.timesteps.tolist()):
        phi_t = current.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([phi_t], lr=settings.learning_rate * (1 - i / 100))
        for _ in range(settings.inner_steps):
            out_uncond, out_cond = unet(
                torch.cat([x, x]), t, encoder_hidden_states=torch.cat([phi_t, cond])
            ).sample.chunk(2)
            x_prev = ddim_transfer(
                x,
                cfg_combine(out_uncond, out_cond, guidance),
                s.alpha(t),
                s.alpha(s.prev_timestep(t)),
                s.prediction_type,
            )
            loss = F.mse_loss(x_prev, trajectory[-2 - i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        current = phi_t.detach()
        phis.append(current)
        with torch.no_grad():
            x = engine.step(x, t, cond, current, guidance).latents
    return torch.cat(phis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--inner_steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/null_text.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    comps = load_components("tiny-quarter")
    counter = Counter(comps.unet)
    engine = SamplingEngine(counter, DDIMSchedule.from_scheduler(comps.scheduler, args.steps))
    cond = encode_text(comps.tokenizer, comps.text_encoder, ["a photo of a dog"])
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""])
    x0 = initial_latents(0, (1, 4, 32, 32), "cpu") * 0.5
    trajectory = ddim_invert(engine, x0, cond)
    settings = NullTextSettings(inner_steps=args.inner_steps, learning_rate=0.05, early_stop=False)

    def timed(fn):
        counter.calls = 0
        start = time.perf_counter()
        phis = fn()
        seconds, calls = time.perf_counter() - start, counter.calls
        replay = engine.sample(trajectory[-1], cond, phi, 7.5, callbacks=[PerStepUncond(phis)])
        return seconds, calls, F.mse_loss(replay, x0).item()

    ours = timed(lambda: null_text_inversion(engine, trajectory, cond, phi, 7.5, settings).phis)
    naive = timed(lambda: naive_null_text(engine, trajectory, cond, phi, 7.5, settings))
    results = {
        "unet": "tiny-quarter (57 M params), 32x32 latent",
        "steps": args.steps,
        "inner_steps": args.inner_steps,
        "seconds": round(ours[0], 2),
        "seconds_naive": round(naive[0], 2),
        "unet_evaluations": ours[1],
        "unet_evaluations_naive": naive[1],
        "speedup_vs_naive": round(naive[0] / ours[0], 3),
        "mse": ours[2],
        "mse_naive": naive[2],
    }
    write_report("null_text", args.out, args.threads, results, target_speedup=1.5)


if __name__ == "__main__":
    main()
