"""Reference-guided generation (Algorithm 2 end to end) batched over images vs one image at a time, on ToySD at
64 px with ToyWorld's own perception (ToySAM masks M_g, ToyDINO picks the reference), a validation-split subject,
the class prompt and the Table 2 guide (t_s 20, t_e 5 of 25 steps, J = 3): the same jobs both ways, alternated.

Reports seconds per image each way ("speedup_batched" = one-at-a-time / batched, target >= 1.3) and the largest
pixel difference between the two runs' images (batched convolutions sum in another order; nothing else differs),
and where an image's time goes each way (`ReferenceRecord.seconds`: I_g1, segmentation, reference selection,
alignment, caption, inversion, guided re-generation; the last run of each).

    python -m benchmarks.reference_batch [--images 4] [--out benchmarks/results/reference_batch.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import interleaved_ms, write_report  # noqa: E402
from hifilight.guide_builder import build_guide  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.options import ReferenceOptions, SourceOptions  # noqa: E402
from hifilight.sampling.generate import make_jobs  # noqa: E402
from hifilight.sampling.guidance import GuidanceSettings  # noqa: E402
from hifilight.sampling.reference import STAGES, reference_guided  # noqa: E402
from hifilight.subjects import Subject  # noqa: E402
from hifilight.toyworld.dataset import HELD_OUT, split_names, write_dataset  # noqa: E402

STEPS, GUIDANCE, RES = 25, 5.0, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=4, help="jobs, all in one batch when batched")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference_batch.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    comps = load_components("toysd")
    name = split_names("val")[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_dataset(Path(tmp), [name], split="val")[0]
        class_name = HELD_OUT[name].shape
        subject = Subject("dreambooth", class_name, "", "toysd", RES)
        options = ReferenceOptions("toyworld", "toyworld", guide=GuidanceSettings(start=20, end=5, inner_steps=3))
        guide = build_guide(subject, SourceOptions(folder, "files"), options, RES, "cpu")
    jobs = make_jobs(["a {} on the beach"], class_name, seed=0, num_images=args.images)
    outputs = {}

    def run(batch_size: int):
        def fn():
            records = reference_guided(comps, None, jobs, guide, STEPS, GUIDANCE, RES, batch_size, progress=False)
            outputs[batch_size] = [np.asarray(r.final, dtype=int) for r in records]
            outputs[f"skipped{batch_size}"] = sum(r.skipped is not None for r in records)
            outputs[f"split{batch_size}"] = {
                stage: round(sum(r.seconds.get(stage, 0.0) for r in records) / len(records), 3) for stage in STAGES
            }

        return fn

    alone, batched = interleaved_ms([run(1), run(args.images)], args.repeats, warmup=0)
    diff = max(int(np.abs(a - b).max()) for a, b in zip(outputs[1], outputs[args.images], strict=True))
    results = {
        "model": "toysd (ToyWorld), 64 px, DDIM 25 steps, guidance 5, t_s 20, t_e 5, J 3",
        "subject": name,
        "images": args.images,
        "skipped": outputs[f"skipped{args.images}"],
        "seconds_per_image_one_at_a_time": round(alone["min"] / 1000 / args.images, 2),
        "seconds_per_image_batched": round(batched["min"] / 1000 / args.images, 2),
        "speedup_batched": round(alone["min"] / batched["min"], 3),
        "max_pixel_difference": diff,
        "seconds_per_image_by_stage_one_at_a_time": outputs["split1"],
        "seconds_per_image_by_stage_batched": outputs[f"split{args.images}"],
    }
    write_report("reference_batch", args.out, args.threads, results, target_speedup=1.3)


if __name__ == "__main__":
    main()
