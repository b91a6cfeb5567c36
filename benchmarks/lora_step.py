"""A LoRA training step vs a DreamBooth step on the ~1/4-SD1.4 UNet (tiny-quarter, 256 px, batch 1): time per step,
peak memory, trainable parameters and the size of what each writes.

Each method runs in its own process (peak resident memory is per process: the model, activations, gradients and
the optimizer state) through Lightning `Trainer.fit` as `hifilight fit` runs it, without prior preservation (it
doubles both methods' batch alike). The artifact is what `hifilight fit --method dreambooth|lora` writes: a whole
diffusers pipeline folder vs one LoRA safetensors file.

    python -m benchmarks.lora_step [--steps 8] [--out benchmarks/results/lora_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

PRESET, RESOLUTION = "tiny-quarter", 256


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def one(method: str, steps: int, threads: int) -> dict:
    """Train `steps` steps of `method` in this process; time per step (the first, which encodes latents, dropped)."""
    import lightning as L
    import torch

    from benchmarks.common import EXAMPLE, bench_trainer
    from hifilight.data import SubjectDataModule
    from hifilight.training.dreambooth import DreamBoothModule
    from hifilight.training.lora import LoRAModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = LoRAModule if method == "lora" else DreamBoothModule
    module = cls(pretrained=PRESET, max_steps=steps, prior_preservation=False)
    dm = SubjectDataModule(EXAMPLE, "dog", masks="none", resolution=RESOLUTION, batch_size=1)
    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, *args):
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args):
            times.append(time.perf_counter() - self.start)

    trainer = bench_trainer(steps, [Timer()])
    trainer.fit(module, dm)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / ("subject.safetensors" if method == "lora" else "subject")
        module.save_outputs(dm, out, overwrite=False)
        size = _size_mb(out)
        unet_mb = _size_mb(out / "unet") if out.is_dir() else size
    return {
        "step_ms_median": round(1000 * statistics.median(times[1:]), 1),
        "trainable_params_m": round(trainable / 1e6, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "artifact_mb": round(size, 3),
        "artifact_unet_part_mb": round(unet_mb, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lora_step.json"))
    parser.add_argument("--one", choices=["dreambooth", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.threads)))
        return
    results = {}
    for method in ("dreambooth", "lora"):
        cmd = [sys.executable, "-m", "benchmarks.lora_step", "--one", method, "--steps", str(args.steps)]
        run = subprocess.run([*cmd, "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results[method] = json.loads(run.stdout.strip().splitlines()[-1])
    db, lora = results["dreambooth"], results["lora"]
    results |= {
        "preset": f"{PRESET} (~1/4-SD1.4 UNet), {RESOLUTION} px, batch 1, no prior preservation",
        "steps": args.steps,
        "lora_step_time_ratio": round(lora["step_ms_median"] / db["step_ms_median"], 3),
        "lora_peak_memory_ratio": round(lora["peak_rss_mb"] / db["peak_rss_mb"], 3),
        "lora_artifact_size_ratio": round(lora["artifact_mb"] / db["artifact_mb"], 5),
    }
    from benchmarks.common import write_report

    write_report("lora_step", args.out, args.threads, results)


if __name__ == "__main__":
    main()
