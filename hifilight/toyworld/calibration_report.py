"""`hifilight toyworld calibrate`: the instrument's calibration (`hifilight.toyworld.calibrate`) run on a split, as
a table, a JSON record and, on request, one picture per subject (source photos, class word, text oracle, DreamBooth
side by side).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.toyworld.calibrate import CLIP_MEASURES, LABELS, all_cells, perception_accuracy, picture, score_cells
from hifilight.toyworld.dataset import PROMPTS, SPLITS
from hifilight.toyworld.fidelity import SUBJECT_ATTRIBUTES


@dataclass(frozen=True)
class CalibrationArgs:
    """Options of `hifilight toyworld calibrate`.

    Args:
        split: subjects to calibrate on: "val" or "test".
        out: JSON file to write (rows, per-cell scores, perception models); default: print only.
        model: the base model ("toysd", or a ToySD folder).
        subjects: only these subjects of --split (default all 8).
        prompts: prompt indices 0..9 (default the 8 background prompts 0..7).
        images_per_prompt: images per subject and prompt for each text row.
        seed: seed of the images and renders.
        steps: DDIM steps.
        guidance: classifier-free guidance weight.
        batch_size: images generated together.
        overwrite: replace an existing --out or pictures in --pictures.
        dreambooth: add the fine-tuning ceiling: DreamBooth fitted per subject (cached in --fits), on its training
            prompt and in the new scenes, at the setting --tuning chose on the validation split for DreamBooth.
        tuning: the validation tuning record whose DreamBooth choice --dreambooth uses (made on these weights).
        dreambooth_args: fit flags for the ceiling instead of --tuning's (say in your report how they were chosen).
        fits: where the ceiling's DreamBooth fits are cached (per weights and subject).
        clip_model: a CLIP model (e.g. ToyCLIP's folder) for CLIP-I and CLIP-T beside the exact measures.
        pictures: a folder for one picture per subject (<subject>.png): its source photos, then a line per row (class
            word, text oracle, and with --dreambooth the ceiling's two), one image per prompt.
        world: which ToyWorld: v1 (the committed one) or v2 (ToySD v2's larger objects).
        world_dir: the folder of that world's models (v2: `hifilight toyworld train toysd2 --out`'s); "toysd" then
            names its ToySD.
    """

    split: str = "test"
    out: Path | None = None
    model: str = "toysd"
    subjects: list[str] | None = None
    prompts: list[int] | None = None
    images_per_prompt: int = 4
    seed: int = 0
    steps: int = 25
    guidance: float = 5.0
    batch_size: int = 32
    overwrite: bool = False
    dreambooth: bool = False
    tuning: Path = Path("docs/toyworld/tuning.json")
    dreambooth_args: list[str] | None = None
    fits: Path = Path("outputs/toyworld_ceiling")
    clip_model: str | None = None
    pictures: Path | None = None
    world: str = "v1"
    world_dir: Path | None = None

    def check(self) -> None:
        """Every flag's own check, before anything is loaded or written."""
        from hifilight.io import check_output_path
        from hifilight.toyworld.ablation import check_split

        check_split(self.split)
        if self.world not in ("v1", "v2"):
            raise HifiError(f"--world must be v1 or v2, got {self.world!r}")
        if self.world_dir is not None and not Path(self.world_dir).is_dir():
            raise HifiError(
                f"--world_dir {self.world_dir}: no such folder; pass the --out of `hifilight toyworld train toysd2`"
            )
        names = SPLITS[self.split]
        unknown = sorted(set(self.subjects or ()) - set(names))
        if unknown or self.subjects == []:
            shown = ", ".join(unknown) or "none given"
            raise HifiError(f"--subjects: {shown} not in the {self.split} split; one of {', '.join(names)}")
        if self.prompts is not None and not all(0 <= i < len(PROMPTS) for i in self.prompts):
            raise HifiError(f"--prompts must be indices in 0..{len(PROMPTS) - 1}, got {self.prompts}")
        if self.images_per_prompt < 1:
            raise HifiError(f"--images_per_prompt must be >= 1, got {self.images_per_prompt}")
        if self.out is not None:
            check_output_path(Path(self.out), self.overwrite, "--out")
        if self.pictures is not None:
            check_output_path(Path(self.pictures), True, "--pictures", folder=True)
            for name in self.chosen():
                check_output_path(Path(self.pictures) / f"{name}.png", self.overwrite, "--pictures")

    def chosen(self) -> dict:
        """The subjects calibrated on: --subjects of --split, or all of it."""
        split = SPLITS[self.split]
        return {name: split[name] for name in self.subjects} if self.subjects else dict(split)


def calibration_record(args: CalibrationArgs) -> dict:
    """The calibration of `args.model` in the current world, as the JSON record `calibrate --out` writes: the
    protocol, the rows and cells, the readers' own accuracy. With `args.pictures`, writes the pictures too."""
    from hifilight.models import load_components
    from hifilight.toyworld.ceiling import ceiling_setting
    from hifilight.toyworld.fidelity import ToyJudge

    comps = load_components(args.model)
    ceiling = ceiling_setting(comps, args.tuning, args.dreambooth_args, args.fits) if args.dreambooth else None
    clip = None
    if args.clip_model is not None:
        from hifilight.perception.encoders import ClipEncoder

        clip = ClipEncoder.from_pretrained(args.clip_model, flag="--clip_model")
    a, subjects = args, args.chosen()
    cells = all_cells(comps, subjects, a.prompts, a.images_per_prompt, a.seed, a.steps, a.guidance, a.batch_size,
                      ceiling)  # fmt: skip
    if a.pictures is not None:
        write_pictures(cells, subjects, a.seed, Path(a.pictures), a.overwrite)
    return {
        "world": a.world,
        "ceiling": None if ceiling is None else {"config": str(ceiling.config), "args": list(ceiling.args)},
        "clip_model": a.clip_model,
        "split": a.split,
        "subjects": list(subjects),
        "model": a.model,
        "weights": comps.fingerprint(),
        "steps": a.steps,
        "guidance": a.guidance,
        "seed": a.seed,
        "images_per_prompt": a.images_per_prompt,
        **score_cells(cells, subjects, a.seed, ToyJudge(), clip),
        "perception": perception_accuracy(),
    }


def write_pictures(cells, subjects: dict, seed: int, folder: Path, overwrite: bool) -> list[Path]:
    """<folder>/<subject>.png per subject (see `calibrate.picture`)."""
    from hifilight.io import save_png
    from hifilight.toyworld.calibrate import source_photos

    photos = source_photos(subjects, seed)
    return [save_png(picture(cells, photos[name], name), folder / f"{name}.png", overwrite) for name in subjects]


def markdown(result: dict) -> str:
    """The calibration table: one line per row, the judge's measures and the per-attribute matches."""
    keys = ["identity", "attributes", "toydino", "prompt", *(f"match_{k}" for k in SUBJECT_ATTRIBUTES)]
    heads = ["identity", "attributes", "ToyDINO", "prompt", "shape", "colour", "pattern", "pattern colour"]
    if any(values.get("clip_i") is not None for values in result["rows"].values()):
        keys, heads = [*keys, *CLIP_MEASURES], [*heads, "CLIP-I", "CLIP-T"]
    lines = ["| Row | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    for row, values in result["rows"].items():
        shown = ("-" if values.get(k) is None else f"{values[k]:.3f}" for k in keys)
        lines.append(f"| {LABELS[row]} | " + " | ".join(shown) + " |")
    cells = next(iter(result["rows"].values()))["cells"]
    lines += [
        "",
        f"ToyWorld calibration, {result['split']} split: {cells} cells (subject x prompt) x "
        f"{result['images_per_prompt']} images; base model {result['model']}, DDIM {result['steps']} steps, "
        f"guidance {result['guidance']}, seed {result['seed']}.",
    ]
    return "\n".join(lines)


def run(args: CalibrationArgs, log=print) -> dict:
    """Check the flags, calibrate in the chosen world, log the table, write --out; returns the record."""
    import json

    from hifilight.io import write_atomic
    from hifilight.toyworld import world

    args.check()
    with world.using(args.world, args.world_dir):
        result = calibration_record(args)
    log(markdown(result))
    if args.pictures is not None:
        log(f"wrote {len(result['subjects'])} pictures to {args.pictures}")
    if args.out is not None:
        text = json.dumps(result, indent=2) + "\n"
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
        log(f"wrote {args.out}")
    return result
