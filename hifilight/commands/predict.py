"""`hifilight predict`: generate images of a learned subject.

hifilight predict --subject dog.safetensors --prompts '["a photo of a {} on the beach"]' --out_dir out/
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from jsonargparse import ArgumentParser
from PIL import Image

from hifilight.commands.common import function_parser, note_random_weights, run_function
from hifilight.errors import HifiError
from hifilight.guide_builder import build_guide
from hifilight.io import check_output_folder, check_writable, image_grid, save_png, write_atomic
from hifilight.models import load_components
from hifilight.options import ModelOptions, ReferenceOptions, SourceOptions, resolve_device
from hifilight.sampling.generate import Job, make_jobs
from hifilight.sampling.reference import ReferenceRecord, SourceSet
from hifilight.sampling.renderer import SubjectRenderer
from hifilight.subjects import load_subject


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def output_paths(out_dir: Path, jobs: list[Job]) -> list[Path]:
    return [out_dir / f"{i:03d}_{_slug(j.text)}_s{j.seed}.png" for i, j in enumerate(jobs)]


def predict(
    subject: Path,
    prompts: list[str],
    out_dir: Path = Path("outputs/predict"),
    model: ModelOptions | None = None,
    seed: int = 0,
    num_images: int = 1,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int | None = None,
    batch_size: int = 4,
    stepwise: bool | None = None,
    reference_guidance: bool = False,
    data: SourceOptions | None = None,
    reference: ReferenceOptions | None = None,
    save_intermediates: bool = False,
    onnx: Path | None = None,
    overwrite: bool = False,
) -> None:
    """Generate images of a learned subject (Sec. 3.2 conditioning [c, c_s]) with guided DDIM (Eq. 1).

    Args:
        subject: what `hifilight fit` wrote: a HiFi subject artifact or a Textual Inversion embedding (.safetensors),
            or a DreamBooth model folder.
        prompts: prompts; {} or <subject> marks the subject ("a {} on the beach"; it becomes the class word, with
            the method's identifier before it for Textual Inversion / DreamBooth), else the class word must appear.
        out_dir: folder for one PNG per image, grid.png and predict.json.
        model: base model options.
        seed: seed of the first image of each prompt; image i uses seed + i.
        num_images: images per prompt.
        steps: DDIM steps (paper: 50).
        guidance: classifier-free guidance weight w (Eq. 1).
        resolution: image size in pixels (default: the resolution the subject was trained at).
        batch_size: images denoised together.
        stepwise: use the step-wise embeddings c_s^t at each step (Eq. 7). Default: when the artifact has them.
        reference_guidance: reference-guided generation (Algorithm 2): each image is re-generated with guidance
            from the closest source photo (needs --data.subject_dir); also writes the unguided image as *_g1.png.
        data: the subject's source photos and masks, for --reference_guidance.
        reference: reference-guided generation settings (paper: --reference.guide.start 40 end 10 inner_steps 10).
        save_intermediates: with --reference_guidance, also write M_g, the chosen reference, its aligned version
            and M_r* per image.
        onnx: sample with onnxruntime from this `hifilight export onnx` folder instead of torch (HiFi and DreamBooth
            subjects; not with --reference_guidance, which needs gradients).
        overwrite: replace existing files in out_dir.
    """
    model, reference = model or ModelOptions(), reference or ReferenceOptions()
    check_sampling(steps, batch_size, guidance, reference if reference_guidance else None)
    subj = load_subject(subject)
    per_step = subj.stepwise(stepwise)
    jobs = make_jobs(prompts, subj.word, seed, num_images)
    paths = output_paths(Path(out_dir), jobs)
    check_outputs(Path(out_dir), paths, reference_guidance, save_intermediates, overwrite)
    pretrained = model.pretrained or subj.base_model
    note_random_weights(pretrained)
    device = resolve_device(model.device)
    comps = components(subject, model, pretrained, device, onnx, reference_guidance)
    size = resolution or subj.resolution
    guide = build_guide(subj, data or SourceOptions(), reference, size, device) if reference_guidance else None
    renderer = SubjectRenderer(comps).set_subject(subj, per_step, guide)
    rendered = renderer.render(jobs, steps, guidance, size, batch_size, guided=reference_guidance)
    summaries = write_images(rendered, paths, guide, Path(out_dir), num_images, save_intermediates, overwrite)
    manifest = {
        "subject": str(subject),
        "base_model": pretrained,
        "steps": steps,
        "guidance": guidance,
        "resolution": size,
        "stepwise": per_step,
        "reference_guidance": asdict(reference) if reference_guidance else False,
        "images": [
            {"file": p.name, "prompt": j.prompt, "text": j.text, "seed": j.seed, **extra}
            for p, j, extra in zip(paths, jobs, summaries, strict=True)
        ],
    }
    write_atomic(Path(out_dir) / "predict.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)), overwrite)
    print(f"wrote {len(rendered)} images and grid.png to {out_dir}")


def check_sampling(steps: int, batch_size: int, guidance: float, reference: ReferenceOptions | None) -> None:
    """One line for a sampling setting out of range (the guidance window against the steps when guided)."""
    if steps < 1:
        raise HifiError(f"--steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise HifiError(f"--batch_size must be >= 1, got {batch_size}")
    if reference is not None:
        try:
            reference.guide.check(steps, guidance)
        except ValueError as err:
            raise HifiError(str(err)) from None


def check_outputs(out_dir: Path, paths: list[Path], guided: bool, intermediates: bool, overwrite: bool) -> None:
    """Refuse, before any model loads, to write over files of an earlier run unless --overwrite."""
    extras = [n for p in paths for n in output_names(p, intermediates)] if guided else []
    check_output_folder(out_dir, "--out_dir")
    for path in [*paths, *extras, out_dir / "grid.png", out_dir / "predict.json"]:
        check_writable(path, overwrite, "--overwrite")


def components(subject: Path, model: ModelOptions, pretrained: str, device: str, onnx: Path | None, guided: bool):
    """The base model's components: torch ones, or onnxruntime sessions from an exported folder (no guidance)."""
    if onnx is not None:
        if guided:
            raise HifiError("--onnx: reference guidance optimises through the UNet; sample it with torch (drop --onnx)")
        from hifilight.export.ort import load_onnx_components

        return load_onnx_components(onnx)
    # a base model read from the subject's header is named as such, not as a flag the user never passed
    flag = "--model.pretrained" if model.pretrained else f"--subject {subject}: its header's base_model"
    return load_components(pretrained, model.dtype, device, flag)


def write_images(rendered, paths: list[Path], guide, out_dir: Path, per_row: int, intermediates: bool, overwrite):
    """Each image (and, when guided, its unguided twin and record) at its path, and grid.png; returns each image's
    guidance summary for predict.json ({} when unguided)."""
    summaries = [{} for _ in rendered]
    for i, (result, path) in enumerate(zip(rendered, paths, strict=True)):
        if result.record is not None:
            save_record(result.record, guide.sources, path, intermediates, overwrite)
            summaries[i] = {"unguided": output_names(path, False)[0].name, **result.record.summary(guide.sources)}
        save_png(result.image, path, overwrite)
    save_png(image_grid([r.image for r in rendered], cols=per_row), out_dir / "grid.png", overwrite)
    return summaries


def build_parser() -> ArgumentParser:
    return function_parser(predict, "hifilight predict")


def run(argv: list[str]) -> None:
    run_function(predict, "hifilight predict", argv)


INTERMEDIATES = ("g1", "mask_g", "reference", "reference_aligned", "mask_r_aligned")


def output_names(path: Path, save_intermediates: bool) -> list[Path]:
    """I_g1 always; the masks and references with --save_intermediates."""
    kinds = INTERMEDIATES if save_intermediates else INTERMEDIATES[:1]
    return [path.with_name(f"{path.stem}_{kind}.png") for kind in kinds]


def save_record(record: ReferenceRecord, sources: SourceSet, path: Path, save_intermediates: bool, overwrite: bool):
    """Write I_g1 (and the intermediates) next to the final image `path`."""
    names = output_names(path, save_intermediates)
    save_png(record.first, names[0], overwrite)
    if not save_intermediates:
        return
    mask_png = lambda m: Image.fromarray((m[0].numpy() * 255).astype("uint8"))  # noqa: E731
    extras = {
        names[1]: record.mask_g,
        names[2]: sources.images[record.reference] if record.reference is not None else None,
        names[3]: record.aligned_reference,
        names[4]: record.mask_r_aligned,
    }
    for name, item in extras.items():
        if item is not None:
            save_png(item if isinstance(item, Image.Image) else mask_png(item), name, overwrite)
