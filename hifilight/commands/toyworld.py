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

import json
from pathlib import Path

from hifilight.commands.common import run_group
from hifilight.errors import HifiError
from hifilight.options import ReferenceOptions
from hifilight.sampling.guidance import GuidanceSettings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOY_REFERENCE = ReferenceOptions(
    dino_model="toyworld", generated_masks="toyworld", guide=GuidanceSettings(start=20, end=5)
)


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


def check_split(split: str) -> None:
    from hifilight.toyworld.dataset import SPLITS

    if split not in SPLITS:
        raise HifiError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")


def calibrate(
    split: str = "test",
    out: Path | None = None,
    model: str = "toysd",
    prompts: list[int] | None = None,
    images_per_prompt: int = 4,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 32,
    overwrite: bool = False,
    dreambooth: bool = False,
    tuning: Path = Path("docs/toyworld/tuning.json"),
    dreambooth_args: list[str] | None = None,
    fits: Path = Path("outputs/toyworld_ceiling"),
    clip_model: str | None = None,
    world: str = "v1",
    world_dir: Path | None = None,
) -> None:
    """What the ToyWorld instrument can measure: the class-word floor, the text oracle and the two ceilings, scored
    by the judge every ToyWorld table uses, and the judge's own accuracy; prints a table, writes JSON.

    Args:
        split: subjects to calibrate on: "val" or "test".
        out: JSON file to write (rows, per-cell scores, perception models); default: print only.
        model: the base model ("toysd", or a ToySD folder).
        prompts: prompt indices 0..9 (default the 8 background prompts 0..7).
        images_per_prompt: images per subject and prompt for each text row.
        seed: seed of the images and renders.
        steps: DDIM steps.
        guidance: classifier-free guidance weight.
        batch_size: images generated together.
        overwrite: replace an existing --out.
        dreambooth: add the fine-tuning ceiling: DreamBooth fitted per subject (cached in --fits), on its training
            prompt and in the new scenes, at the setting --tuning chose on the validation split for DreamBooth.
        tuning: the validation tuning record whose DreamBooth choice --dreambooth uses (made on these weights).
        dreambooth_args: fit flags for the ceiling instead of --tuning's (say in your report how they were chosen).
        fits: where the ceiling's DreamBooth fits are cached (per weights and subject).
        clip_model: a CLIP model (e.g. ToyCLIP's folder) for CLIP-I and CLIP-T beside the exact measures.
        world: which ToyWorld: v1 (the committed one) or v2 (ToySD v2's larger objects).
        world_dir: the folder of that world's models (v2: `hifilight toyworld train toysd2 --out`'s); "toysd" then
            names its ToySD.
    """
    from hifilight.toyworld import world as toyworld

    check_split(split)
    if world not in ("v1", "v2"):
        raise HifiError(f"--world must be v1 or v2, got {world!r}")
    if world_dir is not None and not Path(world_dir).is_dir():
        raise HifiError(f"--world_dir {world_dir}: no such folder; pass the --out of `hifilight toyworld train toysd2`")
    from hifilight.io import check_writable, write_atomic
    from hifilight.toyworld.calibrate import CalibrationArgs, calibration_record, markdown
    from hifilight.toyworld.dataset import PROMPTS

    if prompts is not None and not all(0 <= i < len(PROMPTS) for i in prompts):
        raise HifiError(f"--prompts must be indices in 0..{len(PROMPTS) - 1}, got {prompts}")
    if images_per_prompt < 1:
        raise HifiError(f"--images_per_prompt must be >= 1, got {images_per_prompt}")
    if out is not None:
        check_writable(Path(out), overwrite)
    args = CalibrationArgs(split, model, prompts, images_per_prompt, seed, steps, guidance, batch_size, dreambooth,
                           tuning, dreambooth_args, fits, clip_model, world)  # fmt: skip
    with toyworld.using(world, world_dir):
        result = calibration_record(args)
    print(markdown(result))
    if out is not None:
        write_atomic(Path(out), lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"), overwrite=overwrite)
        print(f"wrote {out}")


def ablation(
    out: Path = Path("outputs/toyworld_ablation"),
    method: str = "table2",
    seeds: list[int] | None = None,
    subjects: list[str] | None = None,
    prompts: list[int] | None = None,
    images_per_prompt: int = 4,
    photos: int = 5,
    model: str | None = None,
    fit_config: Path = CONFIGS / "toyworld_hifi.yaml",
    ti_config: Path = CONFIGS / "toyworld_ti.yaml",
    dreambooth_config: Path = CONFIGS / "toyworld_dreambooth.yaml",
    lora_config: Path = CONFIGS / "toyworld_lora.yaml",
    fit_args: list[str] | None = None,
    method_fit_args: dict[str, list[str]] | None = None,
    tuning: Path | list[Path] | None = None,
    rows: list[str] | None = None,
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 8,
    reference: ReferenceOptions = TOY_REFERENCE,
    split: str = "test",
    calibration_rows: bool = True,
) -> dict:
    """The paper's Table 2 on ToyWorld: fit every subject per row and seed, generate every prompt, score the exact
    subject and prompt fidelity measures; writes toyworld_table.md (mean ± std over seeds, each ladder step's paired
    difference with a bootstrap 95% interval), toyworld_table.json (the small summary) and image grids.

    Args:
        out: results folder (dataset/, seed<s>/ with the runner's images and artifacts, toyworld_*); a rerun with
            the same folder resumes.
        method: rows, as `hifilight evaluate --method` ("table2": the paper's ladder, Textual Inversion -> + mask
            -> + regularization -> + step-wise -> + reference guidance, and an extra output-space row without the
            regulariser; "table2_dreambooth": then DreamBooth without and with reference guidance; "ti_vs_ours",
            "hifi_ti", "textual_inversion", ...).
        seeds: one full run per seed (fits' --model.seed/--data.seed and the images' seeds); default [0, 1, 2].
        subjects: ToyWorld subjects (default: all 8 of --split).
        prompts: prompt indices 0..9 (8 backgrounds, 2 recolourings); default all.
        images_per_prompt: images per prompt and seed.
        photos: source photos per subject.
        model: the base model (default "toysd": the committed ToySD, hifilight/assets/toyworld/toysd).
        fit_config: `hifilight fit` YAML for the HiFi rows.
        ti_config: YAML for the Textual Inversion rows.
        dreambooth_config: YAML for the DreamBooth rows (method "table2_dreambooth").
        lora_config: YAML for the LoRA rows (methods "lora_ladder", "table2_lora").
        fit_args: extra `hifilight fit` arguments for every fit (e.g. '["--data.batch_size", "2"]').
        method_fit_args: extra arguments per fit method (hifi_ti, textual_inversion, dreambooth), e.g.
            '{"hifi_ti": ["--model.stage1_steps", "50"]}'.
        tuning: a record of `hifilight toyworld tune` (made on the val split), or several for disjoint rows (e.g.
            Table 2's and the LoRA rows'): each row fits with its chosen arguments; the record goes into the summary.
        rows: only these rows of --method (by name, e.g. '[ti_mask, regularization]').
        steps: DDIM steps (and the step-wise stage's T).
        guidance: classifier-free guidance weight.
        batch_size: images generated together.
        reference: reference-guidance settings; default: ToyDINO picks the reference, ToySAM segments the generated
            image, t_s = 20 and t_e = 5 of the 25 steps (where the paper puts 40 and 10 of 50).
        split: "val" (choose settings here) or "test" (final tables only); named in the protocol line.
        calibration_rows: also score the class-word floor, the text oracle and the ceilings.
    """
    from hifilight.evaluation.dreambench import load_dreambench
    from hifilight.evaluation.dreambench_protocol import MetricOptions, evaluate
    from hifilight.io import write_atomic
    from hifilight.models import load_components
    from hifilight.options import ModelOptions
    from hifilight.toyworld.ablation import (
        CALIBRATION,
        score_runs,
        summarize,
        table_record,
        write_comparison,
        write_grids,
        write_report,
    )
    from hifilight.toyworld.dataset import write_dataset
    from hifilight.toyworld.toysd import SIZE
    from hifilight.toyworld.tuning import row_choices

    seeds = [0, 1, 2] if seeds is None else seeds
    model = model or "toysd"
    check_split(split)
    if not seeds or len(set(seeds)) != len(seeds):
        raise HifiError(f"--seeds must be distinct and not empty, got {seeds}")
    for flag, path in (
        ("--fit_config", fit_config),
        ("--ti_config", ti_config),
        ("--dreambooth_config", dreambooth_config),
        ("--lora_config", lora_config),
    ):
        if not Path(path).is_file():
            raise HifiError(f"{flag} {path}: no such file; pass a `hifilight fit` YAML")
    table_rows = table_rows_of(method, rows)
    tuned = read_tunings(tuning) if tuning is not None else None
    comps = load_components(model)
    weights = comps.fingerprint()
    if tuned and tuned.get("weights") not in (None, weights):
        raise HifiError(
            f"--tuning {tuning} was chosen on other weights of {model} ({tuned['weights']}, these are "
            f"{weights}); tune again with `hifilight toyworld tune` on these weights"
        )
    check_weights_marker(Path(out), weights)
    data = Path(out) / "dataset"
    try:
        if not (data / "prompts_and_classes.txt").is_file():
            write_dataset(data, subjects, photos, SIZE, seed=0, split=split)
    except ValueError as err:
        raise HifiError(f"--subjects: {err}") from None
    for seed in seeds:  # the runner's DINO / CLIP table is not printed: its CLIP is random; ToyWorld's own follows
        evaluate(
            data,
            method,
            Path(out) / f"seed{seed}",
            images_per_prompt=images_per_prompt,
            subjects=subjects,
            prompts=prompts,
            reference_guidance=True,
            fit_config=fit_config,
            ti_config=ti_config,
            dreambooth_config=dreambooth_config,
            lora_config=lora_config,
            fit_args=[*(fit_args or []), "--model.seed", str(seed), "--data.seed", str(seed)],
            method_fit_args=method_fit_args,
            row_fit_args=row_choices(tuned["choice"], table_rows) if tuned else None,
            rows=[r.name for r in table_rows],
            model=ModelOptions(pretrained=model),
            steps=steps,
            guidance=guidance,
            resolution=SIZE,
            batch_size=batch_size,
            seed=1000 * seed,
            reference=reference,
            metrics=MetricOptions(dino_model="toyworld", clip_model="tiny"),
            print_table=False,
        )
    bench = load_dreambench(data, subjects)
    indices = list(range(len(bench[0].prompts))) if prompts is None else prompts
    cells = score_runs(
        Path(out),
        seeds,
        table_rows,
        bench,
        indices,
        images_per_prompt,
        comps=comps,
        steps=steps,
        guidance=guidance,
        batch_size=batch_size,
        calibration_rows=calibration_rows,
    )
    kinds = {r.kind for r in table_rows}
    configs = [
        fit_config,
        ti_config,
        *([dreambooth_config] if "dreambooth" in kinds else []),
        *([lora_config] if "lora" in kinds else []),
    ]
    extras = " ".join(filter(None, [" ".join(fit_args or []), str(method_fit_args or "")]))
    protocol = (
        f"ToyWorld, {split} split: {len(bench)} subjects x {len(indices)} prompts x {images_per_prompt} "
        f"images x {len(seeds)} seeds {seeds}; base model {model}; DDIM {steps} steps, guidance {guidance}; "
        f"fits from "
        f"{' / '.join(c.name for c in configs)}{' ' + extras if extras else ''}"
        f"{'; per-row settings tuned on val (' + ', '.join(map(str, as_list(tuning))) + ')' if tuning else ''}; "
        f"reference guidance from step {reference.guide.start} to {reference.guide.end}, "
        f"J = {reference.guide.inner_steps}."
    )
    summary = summarize(cells, [*(CALIBRATION if calibration_rows else ()), *table_rows], seeds)
    print(write_report(Path(out), cells, summary, protocol))
    record = table_record(summary, split, protocol, tuned, weights)
    write_atomic(
        Path(out) / "toyworld_table.json",
        lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"),
        overwrite=True,
    )
    grids = write_grids(Path(out), seeds[0], table_rows, bench, indices, images_per_prompt)
    compare = [c for s in bench if (c := write_comparison(Path(out), seeds[0], table_rows, s, indices))]
    print(
        f"wrote {Path(out) / 'toyworld_table.md'}, toyworld_table.json (per-cell scores: toyworld_results.csv), "
        f"{len(grids)} grids of seed {seeds[0]} in {Path(out) / 'grids'} (a line per prompt) and "
        f"{len(compare)} comparisons (source photos, then a line per row)"
        + (f", e.g. {compare[0]}" if compare else " (no images on disk: every cell was scored earlier)")
    )
    return summary


def table_rows_of(method: str, names: list[str] | None):
    """The table's rows of --method (without the "real" ceiling row), or the named ones of them."""
    from hifilight.evaluation.runner import method_rows, select_rows

    try:
        return select_rows([r for r in method_rows(method, reference=True) if r.kind != "real"], names)
    except ValueError as err:
        raise HifiError(f"{err} (--method {method})") from None


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def check_weights_marker(out: Path, weights: str) -> None:
    """Refuse to resume an ablation folder whose cells were made on other weights; mark a new one."""
    from hifilight.io import write_atomic
    from hifilight.toyworld.ablation import WEIGHTS_MARKER

    marker = out / WEIGHTS_MARKER
    if marker.is_file():
        if marker.read_text().strip() != weights:
            raise HifiError(
                f"--out {out}: holds cells made on other weights ({marker.read_text().strip()}, these are "
                f"{weights}); use a new --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, lambda tmp: tmp.write_text(weights + "\n"))


def read_tunings(paths: Path | list[Path]) -> dict:
    """One tuning record, or several for disjoint rows merged into one: the same split and weights, the choices
    together, the records themselves under "records"."""
    if not isinstance(paths, list):
        return read_tuning(paths)
    records = [read_tuning(p) for p in paths]
    if not records:
        raise HifiError("--tuning []: give a record of `hifilight toyworld tune`, or several")
    if len({r.get("weights") for r in records}) > 1:
        raise HifiError(f"--tuning {paths}: the records were chosen on different weights; tune them on the same")
    choice: dict[str, list[str]] = {}
    for path, record in zip(paths, records, strict=True):
        clash = choice.keys() & record["choice"].keys()
        if clash:
            raise HifiError(f"--tuning {path}: chooses rows another record chose too ({', '.join(sorted(clash))})")
        choice |= record["choice"]
    return {"split": "val", "weights": records[0].get("weights"), "choice": choice, "records": records}


def read_tuning(path: Path) -> dict:
    from hifilight.toyworld.tuning import check_record

    try:
        data = json.loads(Path(path).read_text())
        check_record(data, str(path))
    except FileNotFoundError:
        raise HifiError(f"--tuning {path}: no such file; write it with `hifilight toyworld tune`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HifiError(f"--tuning {path}: not JSON; write it with `hifilight toyworld tune`") from None
    except ValueError as err:
        raise HifiError(f"--tuning {err}") from None
    return data


def tune(
    grid: dict[str, list[list[str]]],
    out: Path = Path("outputs/toyworld_tune"),
    method: str = "table2",
    seeds: list[int] | None = None,
    subjects: list[str] | None = None,
    prompts: list[int] | None = None,
    images_per_prompt: int = 2,
    measure: str = "attributes",
    part: str | None = None,
    record_out: Path | None = None,
    overwrite: bool = False,
    fit_config: Path = CONFIGS / "toyworld_hifi.yaml",
    ti_config: Path = CONFIGS / "toyworld_ti.yaml",
    dreambooth_config: Path = CONFIGS / "toyworld_dreambooth.yaml",
    lora_config: Path = CONFIGS / "toyworld_lora.yaml",
    steps: int = 25,
    guidance: float = 5.0,
    batch_size: int = 8,
    reference: ReferenceOptions = TOY_REFERENCE,
) -> None:
    """Choose each row's fit settings on the validation split, the same grid size for every method: every row of
    --method that fits is scored at every point of its fit method's grid; the best point by identity (ties:
    ToyDINO) is its choice. Writes the record (grid, every score, the choices) for `toyworld ablation --tuning`.

    Args:
        grid: per fit method (hifi_ti, textual_inversion, dreambooth), a list of points, each a list of `hifilight
            fit` arguments, e.g. '{"textual_inversion": [["--model.learning_rate", "5e-3"]], ...}'.
        out: working folder (one ablation folder per method and point; reruns resume).
        method: the table whose rows are tuned ("table2" or "table2_dreambooth").
        seeds: seeds of every point (default [0]).
        subjects: validation subjects to tune on (default: all 8 of the val split).
        prompts: prompt indices (default 0, 2, 4, 6, 8: four backgrounds and a recolouring).
        images_per_prompt: images per prompt and seed.
        measure: what picks a row's point: "attributes" (default: the mean per-attribute match, measured on every
            image), "identity" (all four right: few hits on a small budget) or "toydino"; ties: ToyDINO.
        part: "k/n": run only grid cells k, k+n, ... (methods x points, in order) and write no record, so n
            processes can share the grid; a last run without --part resumes every cell and writes the record.
        record_out: where to write the record (default <out>/tuning.json).
        overwrite: replace an existing record.
        fit_config: base YAML of the HiFi fits (the grid's arguments are added to it).
        ti_config: base YAML of the Textual Inversion fits.
        dreambooth_config: base YAML of the DreamBooth fits.
        lora_config: base YAML of the LoRA fits.
        steps: DDIM steps.
        guidance: classifier-free guidance weight.
        batch_size: images generated together.
        reference: reference-guidance settings (as `toyworld ablation`).
    """
    from hifilight.evaluation.dreambench_protocol import parse_shard
    from hifilight.io import check_writable, write_atomic
    from hifilight.models import load_components
    from hifilight.toyworld import tuning

    seeds = [0] if seeds is None else seeds
    prompts = [0, 2, 4, 6, 8] if prompts is None else prompts
    record_out = Path(record_out or Path(out) / "tuning.json")
    shard = parse_shard(part, "--part")
    if shard is None:
        check_writable(record_out, overwrite)
    rows = table_rows_of(method, None)
    weights = load_components("toysd").fingerprint()  # what the ablations below run on, read before they start
    try:
        tuning.check_grid(grid, rows)
        tuning.check_measure(measure)
    except ValueError as err:
        raise HifiError(str(err)) from None
    scores: dict[str, list[dict]] = {}
    cells = [
        (m, k, point, tuned) for m, tuned in tuning.tuned_rows(rows, grid).items() for k, point in enumerate(grid[m])
    ]
    for n, (fit_method, k, point, tuned) in enumerate(cells):
        if shard is not None and n % shard[1] != shard[0]:
            continue
        summary = ablation(
            Path(out) / fit_method / f"point{k}",
            method,
            seeds,
            subjects,
            prompts,
            images_per_prompt,
            fit_config=fit_config,
            ti_config=ti_config,
            dreambooth_config=dreambooth_config,
            lora_config=lora_config,
            method_fit_args={fit_method: point},
            rows=[r.name for r in tuned],
            steps=steps,
            guidance=guidance,
            batch_size=batch_size,
            reference=reference,
            split="val",
            calibration_rows=False,
        )
        for entry in summary["methods"]:
            scores.setdefault(entry["method"], []).append(
                {"point": k, "args": point, **{m: entry[m]["mean"] for m in tuning.CHOICE_MEASURES}}
            )
    if shard is not None:
        print(f"tune --part {part}: its cells are done; run once more without --part to write {record_out}")
        return
    result = tuning.record("val", seeds, grid, rows, scores, measure, subjects, weights)
    write_atomic(record_out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"), overwrite=overwrite)
    for row, args in result["choice"].items():
        print(f"{row}: {' '.join(args) or '(the config as it is)'}")
    print(f"wrote {record_out}")


TRAINERS = {
    "toysd": "hifilight.toyworld.toysd",
    "toysd2": "hifilight.toyworld.toysd2",
    "models": "hifilight.toyworld.models",
}


def snapshot(out: Path = Path("outputs/toyworld_ablation"), to: Path | None = None) -> None:
    """Save what resumes a long ablation in a later session, without its images: per seed the scored cells,
    the runner's results and the fitted single-file subjects (cells made but not scored yet are scored now).

    Restore with `cp -r <to>/. <out>/` and rerun the same ablation command: scored cells are read back, only the
    missing ones are fitted and generated.

    Args:
        out: the ablation's --out folder.
        to: where to write the snapshot (a new or existing folder; its files are replaced).
    """
    from hifilight.toyworld.ablation import snapshot as save

    if to is None:
        raise HifiError("--to is required: the folder to write the snapshot to")
    if not (Path(out) / "dataset" / "prompts_and_classes.txt").is_file() or not any(Path(out).glob("seed*")):
        raise HifiError(
            f"--out {out}: not a toyworld ablation folder (no dataset/ or seed<s>/); pass the ablation's --out"
        )
    counts = save(Path(out), Path(to))
    print(f"wrote {to}: scored cells per seed {counts}; restore with cp -r {to}/. {out}/ and rerun the ablation")


def train(what: str, args: list[str] | None = None) -> None:
    """Train ToyWorld's own models from scratch: `train toysd ...` (ToySD, the generator; hours on a CPU) or
    `train models ...` (ToyDINO, the classifier, and ToySAM, the segmenter); `train <what> --help` lists the options.
    """
    import importlib

    if what not in TRAINERS:
        raise HifiError(f"train {what}: unknown trainer; choose one of {', '.join(TRAINERS)}")
    importlib.import_module(TRAINERS[what]).main(args or [])


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
    if argv[:1] == ["train"]:  # the trainers keep their own argparse options: hand them the rest
        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            print(f"usage: hifilight toyworld train {{{','.join(TRAINERS)}}} [options]\n\n{train.__doc__}")
            if len(argv) < 2:
                raise HifiError(f"hifilight toyworld train: choose a trainer: {', '.join(TRAINERS)}")
            return
        return train(argv[1], argv[2:])
    run_group(COMMANDS, "hifilight toyworld", argv)
