"""Scale figures: memory/time options on the ~1/4-SD UNet (CPU), FLOPs of the real SD1.4 shape, batched sampling.

1. Peak memory (RSS above the loaded model, each configuration in a fresh process) and step time of one HiFi
   training step (UNet forward + backward into the conditioning) with and without gradient checkpointing, in fp32
   and bf16 autocast, on the ~1/4-SD1.4 UNet at a 64x64 latent (512 px).
2. FLOPs per step of the full SD1.4-shaped UNet (860 M parameters, built on the meta device: no weights, no
   compute) at 512 px, and of SDXL base's UNet (2.6 B) at 1024 px, counted with torch.utils.flop_counter: a forward,
   a HiFi training step (backward into the conditioning only), a DreamBooth step (weights too). From them, the
   estimated wall time of the whole HiFi pipeline at the paper's settings on an A100 and an H200 at a stated
   utilisation of their dense bf16 peak.
3. Sampling throughput with the CFG branches and 4 images in one UNet call vs one image at a time.

    python -m benchmarks.scale [--parts memory,flops,sampling] [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import write_report  # noqa: E402

PEAK_TFLOPS_BF16 = {"a100": 312.0, "h200": 989.0}  # dense, no sparsity (vendor data sheets)
UTILISATION = 0.25  # batch-1 diffusion steps are far from peak; an assumption, not a measurement


def memory_case(checkpointing: bool, bf16: bool, steps: int) -> dict:
    """Runs in a fresh process (see main): peak RSS above the loaded model, and the median step time."""
    import psutil

    from hifilight.models import load_components
    from hifilight.training.unet_options import configure_unet

    torch.set_num_threads(2)
    unet = load_components("tiny-quarter").unet
    configure_unet(unet, gradient_checkpointing=checkpointing)
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(1, 4, 64, 64, generator=g), torch.randn(1, 77, 768, generator=g).requires_grad_(True)
    base = psutil.Process().memory_info().rss
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = unet(x, torch.tensor([500]), encoder_hidden_states=c).sample
        out.float().pow(2).mean().backward()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    return {
        "gradient_checkpointing": checkpointing,
        "bf16": bf16,
        "peak_mb_above_model": round((peak - base) / 2**20),
        "step_s": round(sorted(times)[len(times) // 2], 3),
    }


def sd14_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, cross_attention_dim=768, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8
    )


def sdxl_unet():
    """SDXL base 1.0's UNet configuration (2.6 B parameters), as hifilight loads it (PackedSDXLUNet)."""
    from hifilight.models.sdxl import PackedSDXLUNet

    return PackedSDXLUNet(
        sample_size=128,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10),
        cross_attention_dim=2048,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        use_linear_projection=True,
    )


def flops(unet_fn, latent: int, context: tuple[int, int]) -> dict:
    """FLOPs of a UNet built on the meta device at a `latent` x `latent` latent, with (rows, width) conditioning."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = unet_fn()
    x, t = torch.randn(1, 4, latent, latent, device="meta"), torch.tensor([500], device="meta")

    def count(weights: bool, backward: bool, batch: int = 1) -> float:
        unet.requires_grad_(weights)
        c = torch.randn(batch, *context, device="meta", requires_grad=backward)
        with FlopCounterMode(display=False) as counter:
            out = unet(x.expand(batch, -1, -1, -1), t.expand(batch), encoder_hidden_states=c).sample
            if backward:
                out.sum().backward()
        return counter.get_total_flops()

    fwd, fwd_cfg, train, dreambooth = count(False, False), count(False, False, 2), count(False, True), count(True, True)
    # HiFi at the paper's settings: 1000 stage-1 + 50 x 10 step-wise training steps; generation: 50 CFG steps
    # (I_g1), 50 inversion steps (cond only), 40 CFG steps from t_s again, 30 guided steps x (10 uncond fwd+bwd +
    # 1 uncond fwd). VAE and text encoder are not counted.
    pipeline = 1500 * train + (50 + 40) * fwd_cfg + 50 * fwd + 30 * (10 * train + fwd)
    est = {
        f"est_minutes_{gpu}": round(pipeline / (peak * 1e12 * UTILISATION) / 60, 2)
        for gpu, peak in PEAK_TFLOPS_BF16.items()
    }
    return {
        "unet_params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "latent": f"{latent}x{latent} ({latent * 8} px)",
        "flops_forward": fwd,
        "flops_forward_cfg_batch2": fwd_cfg,
        "flops_train_step": train,
        "flops_dreambooth_step": dreambooth,
        "flops_sampling_step": fwd_cfg,
        "flops_hifi_pipeline": pipeline,
        "utilisation_assumed": UTILISATION,
        "peak_tflops_bf16": PEAK_TFLOPS_BF16,
        **est,
    }


def batched_sampling(repeats: int) -> dict:
    from hifilight.models import load_components
    from hifilight.sampling.generate import generate, make_jobs

    comps = load_components("tiny-quarter")
    jobs = make_jobs(["a photo of a dog"], "dog", 0, 4)
    times = {1: [], 4: []}
    for _ in range(repeats):
        for batch in (1, 4):
            start = time.perf_counter()
            generate(comps, None, jobs, 5, 7.5, 256, batch_size=batch, progress=False)
            times[batch].append(time.perf_counter() - start)
    one, four = min(times[1]), min(times[4])
    return {
        "unet": "tiny-quarter, 256 px, 5 steps, 4 images",
        "images_per_s_batch1": round(4 / one, 3),
        "images_per_s_batch4": round(4 / four, 3),
        "speedup": round(one / four, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--case", type=str, default=None, help=argparse.SUPPRESS)  # child process: one memory case
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument(
        "--parts",
        type=lambda v: v.split(","),
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}; the others are kept from an existing --out",
    )
    args = parser.parse_args()
    if args.case:
        ckpt, bf16 = (bool(int(v)) for v in args.case.split(","))
        print(json.dumps(memory_case(ckpt, bf16, args.steps)))
        return
    torch.set_num_threads(args.threads)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"--parts {','.join(sorted(unknown))}: use names from {','.join(PARTS)}")
    kept = json.loads(args.out.read_text())["configs"] if args.out.is_file() else {}
    results = {key: value for key, value in kept.items() if PARTS_OF.get(key) not in args.parts}
    for part in args.parts:
        results |= PARTS[part](args)
    write_report("scale", args.out, args.threads, results)


def memory_cases(args) -> dict:
    memory = []
    for case in ("0,0", "1,0", "0,1", "1,1"):
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--steps", str(args.steps)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        memory.append(json.loads(out.strip().splitlines()[-1]))
    return {"memory_quarter_unet_cpu": memory}


PARTS = {
    "memory": memory_cases,
    "flops": lambda args: {
        "flops_sd14": flops(sd14_unet, 64, (77, 768)),
        "flops_sdxl": flops(sdxl_unet, 128, (78, 2048)),  # 1024 px; the pooled row + 77 token rows (packed)
    },
    "sampling": lambda args: {"sampling": batched_sampling(args.repeats)},
}
PARTS_OF = {"memory_quarter_unet_cpu": "memory", "flops_sd14": "flops", "flops_sdxl": "flops", "sampling": "sampling"}


if __name__ == "__main__":
    main()
