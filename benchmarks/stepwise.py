"""Step-wise stage (Algorithm 1) cost: its wall time in a Lightning fit / (T x I x one bare UNet fwd+bwd).

The stage runs through `Trainer.fit` exactly as `hifilight fit` runs it (stage 1 set to 0 steps). A callback
runs one bare UNet forward+backward after every training step, so the two are measured alternately in the same
process state (this machine's speed drifts by several percent over a minute); the bare time is subtracted from
the stage's wall time.

`tiny_full_loader` runs the tiny stage again with the data loader producing (unused) photo batches at every step,
as it did before the stage's batches became sample ids only; `tiny_loader_cut_ratio` is the tiny overhead ratio
with the cut over without it.

    python -m benchmarks.stepwise [--out benchmarks/results/stepwise.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    CONFIGS,
    EXAMPLE,
    InterleavedBare,
    bare_unet_step,
    bench_trainer,
    first_batch,
    interleaved_ms,
    unet_params_m,
    write_report,
)
from hifilight.data import SubjectDataModule  # noqa: E402
from hifilight.training import SubjectEmbeddingModule  # noqa: E402

# (T, I) per config: the paper's 50 x 10 on tiny; fewer on the 1/4-SD UNet to keep the run short on a CPU.
SCHEDULES = {"tiny": (50, 10), "quarter_sd14": (10, 3)}


def bench_config(name: str, preset: str, resolution: int, full_loader: bool = False) -> dict:
    """`full_loader`: the loader still crops and collates the photos at every step (as before the step-wise stage's
    batches became sample ids only), to measure what that cost."""
    T, I = SCHEDULES[name]  # noqa: E741
    torch.manual_seed(0)
    module = SubjectEmbeddingModule(pretrained=preset, stage1_steps=0, stepwise_steps=I, stepwise_num_steps=T)
    if full_loader:
        module.setup = lambda stage: None
    dm = SubjectDataModule(EXAMPLE, "dog", resolution=resolution)
    bare = bare_unet_step(module, first_batch(SubjectDataModule(EXAMPLE, "dog", resolution=resolution, flip_p=0.0)))
    interleaved_ms([bare], 1)  # warm-up
    timer = InterleavedBare(bare)
    trainer = bench_trainer(T * I, [timer])
    trainer.fit(module, dm)
    assert module.stepwise_done
    bare_ms = 1000 * statistics.median(timer.bares)
    step_ms = 1000 * statistics.median(timer.steps[1:])  # the first step also encodes the source latents
    return {
        "preset": preset,
        "latent_size": resolution // 8,
        "unet_params_m": unet_params_m(module),
        "T": T,
        "I": I,
        "stage_seconds": round(timer.wall, 2),
        "bare_unet_fwd_bwd_ms_median": round(bare_ms, 2),
        "stage_step_ms_median": round(step_ms, 2),
        "step_ratio_median": round(step_ms / bare_ms, 3),
        "overhead_ratio": round(1000 * timer.wall / (T * I * bare_ms), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stepwise.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: bench_config(name, preset, res) for name, (preset, res) in CONFIGS.items()}
    preset, res = CONFIGS["tiny"]
    results["tiny_full_loader"] = bench_config("tiny", preset, res, full_loader=True)
    results["tiny_loader_cut_ratio"] = round(
        results["tiny"]["overhead_ratio"] / results["tiny_full_loader"]["overhead_ratio"], 3
    )
    write_report("stepwise", args.out, args.threads, results, target_overhead_ratio=1.10)


if __name__ == "__main__":
    main()
