"""ToySD's UNet training step on the CPU, v1 against v2 and the capacity levers v2 weighed (layers_per_block 2;
transformer blocks, self- and cross-attention, at the full 16x16 latent): seconds per AdamW step of batch 32 on the
16x16x16 latent with 32 text tokens, one torch thread, all in one run so the ratios compare (docs/toyworld.md).

    python -m benchmarks.toysd_step [--steps 4] [--threads 1] [--out benchmarks/results/toysd_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def variants() -> dict:
    from hifilight.toyworld import toyclip, toysd, toysd2

    wide = {"block_out_channels": (64, 128, 192), "cross_attention_dim": toyclip.TEXT_HIDDEN}
    return {
        "v1": toysd.toy_unet,
        "v2": toysd2.toy_unet,
        "v2_layers_per_block_2": lambda: _variant(wide | {"layers_per_block": 2}),
        "v2_attention_at_16x16_and_8x8": lambda: _variant(
            wide
            | {
                "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            }
        ),  # fmt: skip
    }


def _variant(changes: dict):
    from diffusers import UNet2DConditionModel

    from hifilight.toyworld import toysd2

    config = {k: v for k, v in toysd2.toy_unet().config.items() if not k.startswith("_")}
    return UNet2DConditionModel.from_config(config | changes)


def seconds_per_step(build, steps: int) -> tuple[float, int]:
    import torch

    torch.manual_seed(0)
    unet = build()
    opt = torch.optim.AdamW(unet.parameters())
    x, t = torch.randn(32, 16, 16, 16), torch.randint(0, 1000, (32,))
    text = torch.randn(32, 32, unet.config.cross_attention_dim)
    times = []
    for k in range(steps + 1):  # the first step (allocation, kernel choice) is dropped
        start = time.perf_counter()
        loss = unet(x, t, text).sample.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k:
            times.append(time.perf_counter() - start)
    return statistics.median(times), sum(p.numel() for p in unet.parameters())


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/toysd_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name, build in variants().items():
        seconds, params = seconds_per_step(build, args.steps)
        rows[name] = {"seconds_per_step": round(seconds, 3), "parameters": params}
        print(f"{name}: {seconds:.3f} s/step, {params / 1e6:.1f} M parameters", flush=True)
    base = rows["v1"]["seconds_per_step"]
    for row in rows.values():
        row["ratio_to_v1"] = round(row["seconds_per_step"] / base, 2)
    record = {"batch": 32, "latent": [16, 16, 16], "text_tokens": 32, "threads": args.threads, "steps": args.steps,
              "cpu": os.uname().machine, "rows": rows}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
