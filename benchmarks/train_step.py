"""Stage-1 training-step overhead: one `SubjectEmbeddingModule` step vs a bare UNet forward + backward.

Both run on the same latents, timestep and noise, with gradients only into the conditioning. The stage-1 step
includes everything our code adds per step (cached latents and captions, mask resize, splice, loss terms, Adam).
`trainer_ratio_median` times Lightning `Trainer.fit` steps (hooks, closure, logging) against bare steps run
alternately inside the same fit.
Ratios are measured within one run (overhead_ratio from the per-step minima of interleaved runs); absolute times
depend on the machine.

    python -m benchmarks.train_step [--repeats 20] [--out benchmarks/results/train_step.json]
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


def bench_config(preset: str, resolution: int, repeats: int) -> dict:
    torch.manual_seed(0)
    module = SubjectEmbeddingModule(pretrained=preset, stepwise_steps=0)
    batch = first_batch(SubjectDataModule(EXAMPLE, "dog", resolution=resolution, flip_p=0.0))
    opt = module.configure_optimizers()
    bare = bare_unet_step(module, batch)

    def stage1():
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        module.training_step(batch, 0).backward()
        opt.step()

    bare_ms, step_ms = interleaved_ms([bare, stage1], repeats)
    trainer_ms, trainer_bare_ms = trainer_step_ms(preset, resolution, repeats)
    return {
        "preset": preset,
        "latent_size": resolution // 8,
        "unet_params_m": unet_params_m(module),
        "bare_unet_fwd_bwd_ms": {k: round(v, 2) for k, v in bare_ms.items()},
        "stage1_step_ms": {k: round(v, 2) for k, v in step_ms.items()},
        "overhead_ratio": round(step_ms["min"] / bare_ms["min"], 3),
        "overhead_ratio_median": round(step_ms["median"] / bare_ms["median"], 3),
        "trainer_step_ms_median": round(trainer_ms, 2),
        "trainer_bare_ms_median": round(trainer_bare_ms, 2),
        "trainer_ratio_median": round(trainer_ms / trainer_bare_ms, 3),
    }


def trainer_step_ms(preset: str, resolution: int, repeats: int) -> tuple[float, float]:
    """Median Trainer.fit step and median bare UNet step, measured alternately in one fit (InterleavedBare)."""
    module = SubjectEmbeddingModule(pretrained=preset, stage1_steps=repeats + 1, stepwise_steps=0)
    bare = bare_unet_step(module, first_batch(SubjectDataModule(EXAMPLE, "dog", resolution=resolution, flip_p=0.0)))
    timer = InterleavedBare(bare)
    trainer = bench_trainer(repeats + 1, [timer])
    trainer.fit(module, SubjectDataModule(EXAMPLE, "dog", resolution=resolution))
    return 1000 * statistics.median(timer.steps[1:]), 1000 * statistics.median(timer.bares[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: bench_config(preset, res, args.repeats) for name, (preset, res) in CONFIGS.items()}
    write_report("train_step", args.out, args.threads, results, target_overhead_ratio=1.10)


if __name__ == "__main__":
    main()
