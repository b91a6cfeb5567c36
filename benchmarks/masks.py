"""Perception timings (informational): GrabCut per 512 px photo, image-encoder throughput on tiny configs.

python -m benchmarks.masks [--out benchmarks/results/masks.json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import ViTConfig, ViTModel  # noqa: E402

from benchmarks.common import EXAMPLE, write_report  # noqa: E402
from hifilight.perception.encoders import DinoEncoder  # noqa: E402
from hifilight.perception.grabcut import grabcut  # noqa: E402


def grabcut_seconds(images: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for rgb in images:
        grabcut(rgb)
    return (time.perf_counter() - start) / len(images)


def encoder_images_per_s(config: ViTConfig, images: list[Image.Image], repeats: int = 3) -> float:
    torch.manual_seed(0)
    encoder = DinoEncoder(ViTModel(config, add_pooling_layer=False), batch_size=8)
    encoder.encode_images(images[:2])
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.encode_images(images)
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/masks.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = [Image.open(p).convert("RGB").resize((512, 512), Image.BICUBIC) for p in sorted(EXAMPLE.glob("*.jpg"))]
    # ViT-S/16 shape (the DINO model of the DreamBench protocol), random weights
    vit_s16 = ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
    )
    tiny = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    configs = {
        "grabcut_512px_seconds_per_image": round(grabcut_seconds([np.asarray(p) for p in photos]), 3),
        "dino_vits16_shape_images_per_s": round(encoder_images_per_s(vit_s16, photos * 2), 2),
        "dino_tiny_images_per_s": round(encoder_images_per_s(tiny, photos * 2), 2),
    }
    write_report("masks", args.out, args.threads, configs, note="informational; random weights")


if __name__ == "__main__":
    main()
