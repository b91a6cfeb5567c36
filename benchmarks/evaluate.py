"""Evaluation throughput (informational): images per second for generation + DINO/CLIP scoring with the runner, on
the tiny preset (random weights, CPU). Fits are excluded (a pre-fitted artifact is reused).

    python -m benchmarks.evaluate [--out benchmarks/results/evaluate.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import EXAMPLE, write_report  # noqa: E402
from hifilight.evaluation.dreambench import load_dreambench  # noqa: E402
from hifilight.evaluation.rows import method_rows  # noqa: E402
from hifilight.evaluation.runner import EvalSettings, Runner  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.perception.encoders import ClipEncoder, DinoEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--images_per_prompt", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/evaluate.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        (root / "dog").mkdir(parents=True)
        for image in sorted(EXAMPLE.glob("*.jpg")):
            shutil.copy(image, root / "dog" / image.name)
        subjects = load_dreambench(root, class_name="dog")
        settings = EvalSettings(
            Path(tmp) / "out",
            args.images_per_prompt,
            list(range(args.prompts)),
            args.steps,
            resolution=args.resolution,
            base_model="tiny",
        )
        runner = Runner(
            settings,
            lambda name: load_components(name),
            DinoEncoder.from_pretrained("tiny"),
            ClipEncoder.from_pretrained("tiny"),
        )
        runner.start()
        start = time.perf_counter()
        runner.run(method_rows("sd"), subjects)
        seconds = time.perf_counter() - start
    images = args.prompts * args.images_per_prompt
    results = {
        "unet": "tiny (random weights)",
        "steps": args.steps,
        "resolution": args.resolution,
        "images": images,
        "seconds": round(seconds, 2),
        "images_per_second": round(images / seconds, 2),
    }
    write_report("evaluate", args.out, args.threads, results)


if __name__ == "__main__":
    main()
