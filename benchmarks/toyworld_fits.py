"""Where a ToyWorld DreamBooth fit spends its time (the largest cost of Table 2's DreamBooth rows and of the
fine-tuning ceiling), on one validation subject with ToyWorld's DreamBooth preset, each way in its own fit:

- `first`: a fit with prior preservation and an empty class-image folder (class images generated, then trained);
- `cached`: the same fit again, its class images on disk;
- `one_step`: the same with `--model.max_steps 1` (what a fit costs besides its steps: loading, encoding, saving);
- the same `cached` and `one_step` with the text encoder trained too (`--model.train_text_encoder true`, what
  DreamBooth needs to steer ToySD v2), and without prior preservation;
- a bare UNet forward + backward on a batch of the fit's size (instances + class images) as the unit.

It reports class-image generation = first - cached, a training step = (cached - one_step) / (steps - 1), fixed
costs = one_step, and each step as a ratio to the bare UNet step. Times are from this machine; compare ratios.

    python -m benchmarks.toyworld_fits [--steps 60] [--threads 1] [--world v2 --world_dir outputs/toysd_v2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import interleaved_ms, write_report  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.toyworld import world  # noqa: E402
from hifilight.toyworld.dataset import HELD_OUT, split_names, write_dataset  # noqa: E402
from hifilight.toyworld.world import CONFIGS  # noqa: E402
from hifilight.training.fit_cli import fit  # noqa: E402

PRESET = CONFIGS / "toyworld_dreambooth.yaml"


def timed_fit(photos: Path, class_name: str, out: Path, args: list[str], class_dir: Path) -> float:
    """Seconds of one DreamBooth fit (the preset, then `args`) into a fresh `out`."""
    start = time.perf_counter()
    options = {"model.class_dir": str(class_dir), "trainer.default_root_dir": str(out.parent / "logs")}
    fit("dreambooth", photos, class_name, out, config=PRESET, args=args, options=options, overwrite=True)
    return time.perf_counter() - start


def bare_step_ms(batch: int, repeats: int) -> float:
    """A bare UNet forward + backward of ToySD on `batch` latents at 64 px (16x16 latents), min over repeats."""
    comps = load_components("toysd")
    unet = comps.unet.train().requires_grad_(True)
    x = torch.randn(batch, unet.config.in_channels, 16, 16)
    c = torch.randn(batch, comps.tokenizer.model_max_length, comps.text_encoder.config.hidden_size)
    t = torch.full((batch,), 500)

    def step():
        unet.zero_grad(set_to_none=True)
        unet(x, t, encoder_hidden_states=c).sample.square().mean().backward()

    return interleaved_ms([step], repeats)[0]["min"]


def profile(steps: int, tmp: Path) -> dict:
    name = split_names("val")[0]
    photos = write_dataset(tmp / "data", [name], split="val")[0]
    shape = HELD_OUT[name].shape
    run = ["--model.max_steps", str(steps)]
    one = ["--model.max_steps", "1"]
    te = ["--model.train_text_encoder", "true"]
    no_prior = ["--model.prior_preservation", "false"]
    classes = tmp / "class_images"
    seconds = {"first": timed_fit(photos, shape, tmp / "first", run, classes)}
    for key, extra in (("", []), ("text_encoder_", te), ("no_prior_", no_prior)):
        seconds[f"{key}cached"] = timed_fit(photos, shape, tmp / f"{key}cached", run + extra, classes)
        seconds[f"{key}one_step"] = timed_fit(photos, shape, tmp / f"{key}one", one + extra, classes)
    return {"subject": name, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def summary(seconds: dict, steps: int, bare_ms: float, bare_half_ms: float) -> dict:
    step = {
        key: 1000 * (seconds[f"{key}cached"] - seconds[f"{key}one_step"]) / (steps - 1)
        for key in ("", "text_encoder_", "no_prior_")
    }
    return {
        "class_image_generation_s": round(seconds["first"] - seconds["cached"], 2),
        "fixed_costs_s": round(seconds["one_step"], 2),
        "step_ms": round(step[""], 1),
        "step_ms_text_encoder": round(step["text_encoder_"], 1),
        "step_ms_no_prior": round(step["no_prior_"], 1),
        "bare_unet_fwd_bwd_ms_full_batch": round(bare_ms, 1),
        "bare_unet_fwd_bwd_ms_instances_only": round(bare_half_ms, 1),
        "step_over_bare": round(step[""] / bare_ms, 3),
        "step_text_encoder_over_step": round(step["text_encoder_"] / step[""], 3),
        "step_no_prior_over_bare_instances": round(step["no_prior_"] / bare_half_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="training steps of the timed fits (>= 2)")
    parser.add_argument("--world", default="v1", choices=("v1", "v2"))
    parser.add_argument("--world_dir", type=Path, default=None, help="v2: the folder of ToySD v2's models")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/toyworld_fits.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = 4  # the preset's data.batch_size; prior preservation adds as many class images
    with world.using(args.world, args.world_dir), tempfile.TemporaryDirectory() as tmp:
        measured = profile(args.steps, Path(tmp))
        bare, half = bare_step_ms(2 * batch, 5), bare_step_ms(batch, 5)
        weights = load_components("toysd").fingerprint()
    write_report(
        "toyworld_fits",
        args.out,
        args.threads,
        {"preset": PRESET.name, "steps": args.steps, "world": args.world, "weights": weights, **measured},
        results=summary(measured["seconds"], args.steps, bare, half),
    )


if __name__ == "__main__":
    main()
