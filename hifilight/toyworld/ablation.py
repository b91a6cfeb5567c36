"""The paper's Table 2 on ToyWorld (`hifilight toyworld ablation`): fit every subject per row and seed with the
DreamBench runner (`hifilight evaluate`, into `<out>/seed<s>/`), score every cell with the exact measures
(`hifilight.toyworld.cells`), and write the table, its JSON record and image grids (`hifilight.toyworld.report`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.evaluation.dreambench import load_dreambench
from hifilight.evaluation.dreambench_protocol import (
    EvalArgs,
    EvaluateJob,
    MetricOptions,
    evaluate,
    evaluate_config,
    run_evaluate_jobs,
)
from hifilight.evaluation.rows import method_rows, select_rows
from hifilight.io import write_atomic
from hifilight.options import ModelOptions, ReferenceOptions
from hifilight.sampling.guidance import GuidanceSettings
from hifilight.toyworld import figures, report, tuning
from hifilight.toyworld.cells import CALIBRATION, WEIGHTS_MARKER, score_runs
from hifilight.toyworld.dataset import SPLITS, write_dataset
from hifilight.toyworld.toysd import SIZE
from hifilight.toyworld.world import CONFIGS


def toy_reference() -> ReferenceOptions:
    """ToyWorld's reference guidance: ToyDINO picks the reference, ToySAM segments the generated image, t_s = 20 and
    t_e = 5 of the 25 steps (where the paper puts 40 and 10 of 50)."""
    return ReferenceOptions(dino_model="toyworld", generated_masks="toyworld", guide=GuidanceSettings(start=20, end=5))


@dataclass
class AblationArgs:
    """Options of `hifilight toyworld ablation`.

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
        workers: seeds fitted and generated at once, each in a one-thread process (logs in <out>/processes/); 1:
            one after another in this process. On a CPU, one-thread processes use the cores better than threads.
    """

    out: Path = Path("outputs/toyworld_ablation")
    method: str = "table2"
    seeds: list[int] | None = None
    subjects: list[str] | None = None
    prompts: list[int] | None = None
    images_per_prompt: int = 4
    photos: int = 5
    model: str | None = None
    fit_config: Path = CONFIGS / "toyworld_hifi.yaml"
    ti_config: Path = CONFIGS / "toyworld_ti.yaml"
    dreambooth_config: Path = CONFIGS / "toyworld_dreambooth.yaml"
    lora_config: Path = CONFIGS / "toyworld_lora.yaml"
    fit_args: list[str] | None = None
    method_fit_args: dict[str, list[str]] | None = None
    tuning: Path | list[Path] | None = None
    rows: list[str] | None = None
    steps: int = 25
    guidance: float = 5.0
    batch_size: int = 8
    reference: ReferenceOptions = field(default_factory=toy_reference)
    split: str = "test"
    calibration_rows: bool = True
    workers: int = 1

    def check(self) -> None:
        check_split(self.split)
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise HifiError(f"--seeds must be distinct and not empty, got {self.seeds}")
        if self.workers < 1:
            raise HifiError(f"--workers must be >= 1, got {self.workers}")
        for flag in ("fit_config", "ti_config", "dreambooth_config", "lora_config"):
            if not Path(getattr(self, flag)).is_file():
                raise HifiError(f"--{flag} {getattr(self, flag)}: no such file; pass a `hifilight fit` YAML")

    def configs(self, kinds: set[str]) -> list[Path]:
        """The fit YAMLs the rows of `kinds` use (the protocol line names them)."""
        extra = [c for k, c in (("dreambooth", self.dreambooth_config), ("lora", self.lora_config)) if k in kinds]
        return [self.fit_config, self.ti_config, *extra]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise HifiError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")


def table_rows_of(method: str, names: list[str] | None):
    """The table's rows of --method (without the "real" ceiling row), or the named ones of them."""
    try:
        return select_rows([r for r in method_rows(method, reference=True) if r.kind != "real"], names)
    except ValueError as err:
        raise HifiError(f"{err} (--method {method})") from None


def run(args: AblationArgs, log=print) -> dict:
    """Table 2 on ToyWorld: fit, generate and score every seed (resuming what `args.out` holds), log the table and
    write toyworld_table.md (mean ± std over seeds, each ladder step's paired difference with a bootstrap 95%
    interval), toyworld_table.json and image grids. Returns the summary."""
    from hifilight.models import load_components

    args.check()
    seeds, model = args.seeds or [0, 1, 2], args.model or "toysd"
    rows = table_rows_of(args.method, args.rows)
    tuned = tuning.read_tunings(args.tuning) if args.tuning is not None else None
    comps = load_components(model)
    weights = comps.fingerprint()
    if tuned and tuned.get("weights") not in (None, weights):
        raise HifiError(
            f"--tuning {args.tuning} was chosen on other weights of {model} ({tuned['weights']}, these are "
            f"{weights}); tune again with `hifilight toyworld tune` on these weights"
        )
    check_weights_marker(Path(args.out), weights)
    data = Path(args.out) / "dataset"
    try:
        if not (data / "prompts_and_classes.txt").is_file():
            write_dataset(data, args.subjects, args.photos, SIZE, seed=0, split=args.split)
    except ValueError as err:
        raise HifiError(f"--subjects: {err}") from None
    # the runner's DINO / CLIP table is not printed: its CLIP is random; ToyWorld's own follows
    run_seeds(args, {seed: seed_eval_args(args, seed, model, rows, tuned) for seed in seeds})
    bench = load_dreambench(data, args.subjects)
    indices = list(range(len(bench[0].prompts))) if args.prompts is None else args.prompts
    cells = score_runs(Path(args.out), seeds, rows, bench, indices, args.images_per_prompt, comps=comps,
                       steps=args.steps, guidance=args.guidance, batch_size=args.batch_size,
                       calibration_rows=args.calibration_rows)  # fmt: skip
    summary = report.summarize(cells, [*(CALIBRATION if args.calibration_rows else ()), *rows], seeds)
    line = protocol(args, seeds, model, rows, len(bench), indices)
    log(report.write_report(Path(args.out), cells, summary, line))
    record = report.table_record(summary, args.split, line, tuned, weights)
    write_atomic(Path(args.out) / "toyworld_table.json",
                 lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"), overwrite=True)  # fmt: skip
    log(write_pictures(Path(args.out), seeds[0], rows, bench, indices, args.images_per_prompt))
    log(f"wrote {figures.write_plot(Path(args.out), summary, line)} (identity and ToyDINO per row, 95% intervals)")
    return summary


def run_seeds(args: AblationArgs, runs: dict[int, EvalArgs]) -> None:
    """Each seed's DreamBench run: in this process one after another, or with --workers > 1 as one-thread
    `hifilight evaluate` processes, --workers at a time."""
    if args.workers == 1 or len(runs) == 1:
        for run_args in runs.values():
            evaluate(run_args)
        return
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jobs = [EvaluateJob(f"seed{seed}", evaluate_config(a), env=one_thread) for seed, a in runs.items()]
    run_evaluate_jobs(jobs, Path(args.out) / "processes", args.workers)


def seed_eval_args(args: AblationArgs, seed: int, model: str, rows, tuned: dict | None) -> EvalArgs:
    """The DreamBench runner's arguments for one seed of the ablation (fits seeded by it, images by 1000 x it)."""
    return EvalArgs(
        Path(args.out) / "dataset",
        args.method,
        Path(args.out) / f"seed{seed}",
        images_per_prompt=args.images_per_prompt,
        subjects=args.subjects,
        prompts=args.prompts,
        reference_guidance=True,
        fit_config=args.fit_config,
        ti_config=args.ti_config,
        dreambooth_config=args.dreambooth_config,
        lora_config=args.lora_config,
        fit_args=[*(args.fit_args or []), "--model.seed", str(seed), "--data.seed", str(seed)],
        method_fit_args=args.method_fit_args,
        row_fit_args=tuning.row_choices(tuned["choice"], rows) if tuned else None,
        rows=[r.name for r in rows],
        model=ModelOptions(pretrained=model),
        steps=args.steps,
        guidance=args.guidance,
        resolution=SIZE,
        batch_size=args.batch_size,
        seed=1000 * seed,
        reference=args.reference,
        metrics=MetricOptions(dino_model="toyworld", clip_model="tiny"),
        print_table=False,
    )


def protocol(args: AblationArgs, seeds: list[int], model: str, rows, subjects: int, indices: list[int]) -> str:
    """The protocol line under the table: split, sizes, seeds, base model, sampler, fit configs, tuning, guidance."""
    configs = args.configs({r.kind for r in rows})
    extras = " ".join(filter(None, [" ".join(args.fit_args or []), str(args.method_fit_args or "")]))
    tunings = ", ".join(map(str, args.tuning if isinstance(args.tuning, list) else [args.tuning]))
    guide = args.reference.guide
    return (
        f"ToyWorld, {args.split} split: {subjects} subjects x {len(indices)} prompts x {args.images_per_prompt} "
        f"images x {len(seeds)} seeds {seeds}; base model {model}; DDIM {args.steps} steps, guidance "
        f"{args.guidance}; fits from {' / '.join(c.name for c in configs)}{' ' + extras if extras else ''}"
        f"{'; per-row settings tuned on val (' + tunings + ')' if args.tuning else ''}; "
        f"reference guidance from step {guide.start} to {guide.end}, J = {guide.inner_steps}."
    )


def write_pictures(out: Path, seed: int, rows, bench, indices: list[int], images_per_prompt: int) -> str:
    """The grids, comparisons and ladder pictures of `seed`; returns the line that says where they are."""
    grids = figures.write_grids(out, seed, rows, bench, indices, images_per_prompt)
    compare = [c for s in bench if (c := figures.write_comparison(out, seed, rows, s, indices))]
    ladders = [p for s in bench for p in figures.write_ladders(out, seed, rows, s, indices)]
    return (
        f"wrote {out / 'toyworld_table.md'}, toyworld_table.json (per-cell scores: toyworld_results.csv), "
        f"{len(grids)} grids of seed {seed} in {out / 'grids'} (a line per prompt), "
        f"{len(ladders)} ladder pictures and {len(compare)} comparisons (source photos, then a line per row)"
        + (f", e.g. {compare[0]}" if compare else " (no images on disk: every cell was scored earlier)")
    )


def check_weights_marker(out: Path, weights: str) -> None:
    """Refuse to resume an ablation folder whose cells were made on other weights; mark a new one."""
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
