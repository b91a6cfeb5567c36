"""Stage-1 training-step overhead: one `SubjectEmbeddingModule` step vs a bare UNet forward + backward.

Both run on the same latents, timestep and noise, with gradients only into the conditioning. The stage-1 step
includes everything our code adds per step (cached latents and captions, mask resize, splice, loss terms, Adam).
`trainer_ratio` additionally times whole Lightning `Trainer.fit` steps (data loading, logging, hooks).
Ratios are measured within one run (overhead_ratio from the per-step minima of interleaved runs); absolute times
depend on the machine.

    python benchmarks/train_step.py [--repeats 20] [--out benchmarks/results/train_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from hifilight.data import SubjectDataModule  # noqa: E402
from hifilight.io import write_atomic  # noqa: E402
from hifilight.sampling.ddim import add_noise  # noqa: E402
from hifilight.training import SubjectEmbeddingModule  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "hifilight" / "assets" / "example_subject"
CONFIGS = {"tiny": ("tiny", 128), "quarter_sd14": ("tiny-quarter", 256)}  # preset, image size (latent = /8)


def _interleaved_ms(fns, repeats: int, warmup: int = 3) -> list[dict]:
    """Min and median wall time of each function, alternating them every repeat so drift hits all alike.

    The minimum is the least disturbed estimate of a deterministic computation's cost on a shared machine.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [{"min": 1000 * min(acc), "median": 1000 * statistics.median(acc)} for acc in times]


def _batch(module, dm):
    dm.setup()
    dataset = dm.train_dataloader().dataset
    return torch.utils.data.default_collate([dataset[0]])


def bench_config(preset: str, resolution: int, repeats: int) -> dict:
    torch.manual_seed(0)
    module = SubjectEmbeddingModule(pretrained=preset)
    dm = SubjectDataModule(EXAMPLE, "dog", resolution=resolution, flip_p=0.0)
    batch = _batch(module, dm)
    opt = module.configure_optimizers()
    latents, _ = module.encode_latents(batch["pixels"], batch["mask"], list(batch["cache_key"]))
    t = torch.tensor([500])
    noise = torch.randn_like(latents)
    cond = module.encode_captions(list(batch["caption"])).detach().clone().requires_grad_(True)
    x_t = add_noise(latents, noise, t, module.alphas_cumprod)

    def bare():
        cond.grad = None
        pred = module.unet(x_t, t, encoder_hidden_states=cond).sample
        torch.nn.functional.mse_loss(pred, noise).backward()

    def stage1():
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        module.training_step(batch, 0).backward()
        opt.step()

    bare_ms, step_ms = _interleaved_ms([bare, stage1], repeats)
    trainer_ms = trainer_step_ms(preset, resolution, repeats)
    return {
        "preset": preset,
        "latent_size": resolution // 8,
        "unet_params_m": round(sum(p.numel() for p in module.unet.parameters()) / 1e6, 2),
        "bare_unet_fwd_bwd_ms": {k: round(v, 2) for k, v in bare_ms.items()},
        "stage1_step_ms": {k: round(v, 2) for k, v in step_ms.items()},
        "overhead_ratio": round(step_ms["min"] / bare_ms["min"], 3),
        "overhead_ratio_median": round(step_ms["median"] / bare_ms["median"], 3),
        "trainer_step_ms_mean": round(trainer_ms, 2),
        "trainer_ratio_vs_median": round(trainer_ms / bare_ms["median"], 3),
    }


def trainer_step_ms(preset: str, resolution: int, repeats: int) -> float:
    """Per-step wall time of Trainer.fit over `repeats` steps, after a warm-up fit of 3 steps."""
    module = SubjectEmbeddingModule(pretrained=preset)
    with tempfile.TemporaryDirectory() as tmp:

        def fit(steps):
            dm = SubjectDataModule(EXAMPLE, "dog", resolution=resolution)
            trainer = L.Trainer(
                max_steps=steps,
                accelerator="cpu",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                default_root_dir=tmp,
            )
            start = time.perf_counter()
            trainer.fit(module, dm)
            return time.perf_counter() - start

        fit(3)
        warm = fit(3)
        full = fit(3 + repeats)
    return 1000 * (full - warm) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: bench_config(preset, res, args.repeats) for name, (preset, res) in CONFIGS.items()}
    report = {
        "benchmark": "train_step",
        "target_overhead_ratio": 1.10,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "configs": results,
    }
    write_atomic(args.out, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"), overwrite=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
