"""`hifilight toyworld dataset|calibrate|tune|ablation|snapshot`: ToyWorld's subjects in the DreamBench layout, the
instrument's calibration, settings chosen on the validation split, and the paper's Table 2 on ToyWorld scored with
exact measures.

hifilight toyworld dataset --out toyworld/ --photos 5 --split val
hifilight toyworld ablation --out outputs/toyworld_ablation --seeds '[0, 1]'
hifilight toyworld calibrate --split test --out outputs/toyworld_calibration.json
hifilight toyworld tune --config configs/toyworld_tune.yaml   (per-row settings, chosen on the val split)
hifilight toyworld snapshot --out outputs/toyworld_ablation --to runs/my_ablation   (resume in a later session)
"""

from __future__ import annotations

from pathlib import Path

from hifilight.commands.common import run_group
from hifilight.errors import HifiError
from hifilight.toyworld.ablation import AblationArgs, check_split
from hifilight.toyworld.calibration_report import CalibrationArgs
from hifilight.toyworld.grid_search import TuneArgs
from hifilight.toyworld.models import ReadersArgs
from hifilight.toyworld.toyclip_training import ToyCLIPArgs
from hifilight.toyworld.toysd2 import TrainArgs
from hifilight.toyworld.toysd_training import ToySDArgs


def dataset(
    out: Path = Path("outputs/toyworld"),
    subjects: list[str] | None = None,
    photos: int = 5,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    split: str = "test",
) -> None:
    """Write ToyWorld subjects (held-out two-coloured objects): photos, exact masks, prompts_and_classes.txt.

    Args:
        out: dataset folder (then `hifilight evaluate --dataset <out>` or `fit --data.subject_dir <out>/<subject>`).
        subjects: subject names (default: all 8 of --split).
        split: "val" (choose hyperparameters and defaults on these) or "test" (final tables only).
        photos: source photos per subject, each on another background (1..8).
        size: image size in pixels (a multiple of 8).
        seed: seed of poses and textures.
        overwrite: replace existing files.
    """
    from hifilight.toyworld.dataset import write_dataset

    if not 1 <= photos <= 8 or size % 8 or size < 16:
        raise HifiError(f"--photos must be in 1..8 and --size a multiple of 8 >= 16, got {photos} and {size}")
    check_split(split)
    try:
        folders = write_dataset(out, subjects, photos, size, seed, overwrite, split=split)
    except ValueError as err:
        raise HifiError(f"--subjects: {err}") from None
    print(f"wrote {len(folders)} ToyWorld subjects ({split} split) to {out}")


def calibrate(args: CalibrationArgs) -> None:
    """What the ToyWorld instrument can measure: the class-word floor, the text oracle and the two ceilings, scored
    by the judge every ToyWorld table uses, and the judge's own accuracy; prints a table, writes JSON (and with
    --pictures one picture per subject)."""
    from hifilight.toyworld.calibration_report import run

    run(args)


def ablation(args: AblationArgs) -> dict:
    """The paper's Table 2 on ToyWorld: fit every subject per row and seed, generate every prompt, score the exact
    subject and prompt fidelity measures; writes toyworld_table.md (mean ± std over seeds, each ladder step's paired
    difference with a bootstrap 95% interval), toyworld_table.json (the small summary) and image grids."""
    from hifilight.toyworld.ablation import run

    return run(args)


def tune(args: TuneArgs) -> None:
    """Choose each row's fit settings on the validation split, the same grid size for every method: every row of
    --method that fits is scored at every point of its fit method's grid; the best point by identity (ties:
    ToyDINO) is its choice. Writes the record (grid, every score, the choices) for `toyworld ablation --tuning`."""
    from hifilight.toyworld.grid_search import tune as grid_search

    written = grid_search(args)
    if written is not None:
        print(f"wrote {written}")


def snapshot(out: Path = Path("outputs/toyworld_ablation"), to: Path | None = None) -> None:
    """Save what resumes a long ablation in a later session, without its images: per seed the scored cells,
    the runner's results and the fitted single-file subjects (cells made but not scored yet are scored now).

    Restore with `cp -r <to>/. <out>/` and rerun the same ablation command: scored cells are read back, only the
    missing ones are fitted and generated.

    Args:
        out: the ablation's --out folder.
        to: where to write the snapshot (a new or existing folder; its files are replaced).
    """
    from hifilight.toyworld.cells import snapshot as save

    if to is None:
        raise HifiError("--to is required: the folder to write the snapshot to")
    if not (Path(out) / "dataset" / "prompts_and_classes.txt").is_file() or not any(Path(out).glob("seed*")):
        raise HifiError(
            f"--out {out}: not a toyworld ablation folder (no dataset/ or seed<s>/); pass the ablation's --out"
        )
    counts = save(Path(out), Path(to))
    print(f"wrote {to}: scored cells per seed {counts}; restore with cp -r {to}/. {out}/ and rerun the ablation")


def train_toysd(args: ToySDArgs) -> None:
    """Train ToySD (v1), the generator, from scratch on ToyWorld renders: VAE, judge adaptation, UNet and text
    encoder (hours on a CPU)."""
    from hifilight.toyworld.toysd_training import train

    train(args)


def train_toysd2(args: TrainArgs) -> None:
    """Train (or continue) ToySD v2: ToyCLIP, the readers at v2's sizes, then the EMA UNet on ToyCLIP's frozen text
    tower, with full checkpoints every few minutes (--resume true continues one)."""
    from hifilight.toyworld.toysd2 import train

    train(args)


def train_toyclip(args: ToyCLIPArgs) -> None:
    """Train ToyCLIP (or continue a ToySD v2 run's) with hard negatives, and record what it reads of each attribute
    before and after; writes a new folder (--to) for the run's toyclip/."""
    from hifilight.toyworld.toyclip_training import train

    train(args)


def train_models(args: ReadersArgs) -> None:
    """Train ToyWorld's readers from scratch: the classifier (ToyDINO, the judge) and the segmenter (ToySAM)."""
    from hifilight.toyworld.models import train_readers

    train_readers(args)


TRAINERS = {"toysd": train_toysd, "toysd2": train_toysd2, "toyclip": train_toyclip, "models": train_models}


def train(argv: list[str]) -> None:
    """Train ToyWorld's own models from scratch: `train toysd ...` (ToySD v1, the generator; hours on a CPU),
    `train toysd2 ...` (ToySD v2), `train toyclip ...` (v2's text tower) or `train models ...` (ToyDINO and ToySAM);
    `train <what> --help` lists the options.
    """
    run_group(TRAINERS, "hifilight toyworld train", argv, noun="trainer")


def serve_subjects(
    out: Path = Path("serve/subjects"), subject: str = "blue_star_yellow_dots", overwrite: bool = False
) -> None:
    """Re-make the service's embedded subjects: one ToyWorld subject fitted on ToySD as HiFi Tuner, Textual Inversion
    and LoRA subjects, each with its photos for reference guidance (what `make serve` serves on a fresh clone).

    Args:
        out: the service's subjects folder (HIFILIGHT_SUBJECTS_DIR).
        subject: the ToyWorld subject to learn.
        overwrite: replace subjects already there.
    """
    from hifilight.toyworld.serve_subjects import make

    made = make(out, subject, overwrite)
    print(f"wrote {', '.join(p.name for p in made)} (and their photos) to {out}; `make serve` serves them")


COMMANDS = {
    "dataset": dataset,
    "ablation": ablation,
    "calibrate": calibrate,
    "tune": tune,
    "snapshot": snapshot,
    "train": train,
    "serve_subjects": serve_subjects,
}


def run(argv: list[str]) -> None:
    if argv[:1] == ["train"]:  # a group of its own: one typed parser per trainer
        return train(argv[1:])
    run_group(COMMANDS, "hifilight toyworld", argv)
