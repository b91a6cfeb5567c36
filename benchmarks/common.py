"""Shared pieces of the benchmarks: timing, the bare UNet step they compare against, the JSON report."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import lightning as L
import torch

from hifilight.data import SubjectDataModule
from hifilight.io import write_atomic
from hifilight.sampling.ddim import add_noise

EXAMPLE = Path(__file__).resolve().parents[1] / "hifilight" / "assets" / "example_subject"
CONFIGS = {"tiny": ("tiny", 128), "quarter_sd14": ("tiny-quarter", 256)}  # preset, image size (latent = /8)


def interleaved_ms(fns, repeats: int, warmup: int = 3) -> list[dict]:
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


def bench_trainer(max_steps: int, callbacks=(), accelerator: str = "cpu", precision: str = "32-true") -> L.Trainer:
    """A one-device Trainer that writes nothing and prints no progress: what every benchmark fit runs under."""
    return L.Trainer(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def first_batch(dm: SubjectDataModule) -> dict:
    return torch.utils.data.default_collate([dm.dataset()[0]])


def bare_unet_step(module, batch: dict):
    """One UNet forward + backward on the batch's cached latents, gradient only into the conditioning."""
    latents, _ = module.encode_latents(batch["pixels"], batch["mask"], list(batch["cache_key"]))
    t = torch.tensor([500])
    noise = torch.randn_like(latents)
    cond = module.encode_captions(list(batch["caption"])).detach().clone().requires_grad_(True)
    x_t = add_noise(latents, noise, t, module.alphas_cumprod)

    def bare():
        cond.grad = None
        pred = module.unet(x_t, t, encoder_hidden_states=cond).sample
        torch.nn.functional.mse_loss(pred, noise).backward()

    return bare


def unet_params_m(module) -> float:
    return round(sum(p.numel() for p in module.unet.parameters()) / 1e6, 2)


def write_report(name: str, out: Path, threads: int, configs: dict, **extra) -> dict:
    report = {
        "benchmark": name,
        **extra,
        "threads": threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "configs": configs,
    }
    write_atomic(out, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"), overwrite=True)
    print(json.dumps(report, indent=2))
    return report


class InterleavedBare(L.Callback):
    """Times every training step (batch start to end), then one bare UNet step, until the fit ends."""

    def __init__(self, bare):
        self.bare, self.steps, self.bares = bare, [], []

    def on_train_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        t1 = time.perf_counter()
        self.bare()
        self.steps.append(t1 - self.t0)
        self.bares.append(time.perf_counter() - t1)

    def on_train_end(self, trainer, module):
        self.wall = time.perf_counter() - self.start - sum(self.bares)
