"""The validation grid search (`hifilight toyworld tune`): the same grid size for every fit method, every row that
fits scored at every point of its method's grid by a ToyWorld ablation on the val split, and the record of each
row's best point (`hifilight.toyworld.tuning`) that `hifilight toyworld ablation --tuning` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.evaluation.dreambench_protocol import parse_shard
from hifilight.evaluation.rows import Row
from hifilight.io import check_writable, write_atomic
from hifilight.options import ReferenceOptions
from hifilight.toyworld import tuning
from hifilight.toyworld.ablation import AblationArgs, run, table_rows_of, toy_reference
from hifilight.toyworld.world import CONFIGS


@dataclass
class TuneArgs:
    """Options of `hifilight toyworld tune`.

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

    grid: dict[str, list[list[str]]]
    out: Path = Path("outputs/toyworld_tune")
    method: str = "table2"
    seeds: list[int] | None = None
    subjects: list[str] | None = None
    prompts: list[int] | None = None
    images_per_prompt: int = 2
    measure: str = "attributes"
    part: str | None = None
    record_out: Path | None = None
    overwrite: bool = False
    fit_config: Path = CONFIGS / "toyworld_hifi.yaml"
    ti_config: Path = CONFIGS / "toyworld_ti.yaml"
    dreambooth_config: Path = CONFIGS / "toyworld_dreambooth.yaml"
    lora_config: Path = CONFIGS / "toyworld_lora.yaml"
    steps: int = 25
    guidance: float = 5.0
    batch_size: int = 8
    reference: ReferenceOptions = field(default_factory=toy_reference)


def tune(args: TuneArgs, log=print) -> Path | None:
    """Score every row of `args.method` that fits at every point of its fit method's grid (one ToyWorld ablation
    per method and point, on the val split) and write the record of the choices; with --part only that share of the
    cells and no record (None)."""
    from hifilight.models import load_components

    seeds, prompts = args.seeds or [0], [0, 2, 4, 6, 8] if args.prompts is None else args.prompts
    record_out = Path(args.record_out or Path(args.out) / "tuning.json")
    shard = parse_shard(args.part, "--part")
    if shard is None:
        check_writable(record_out, args.overwrite)
    rows = table_rows_of(args.method, None)
    weights = load_components("toysd").fingerprint()  # what the ablations below run on, read before they start
    try:
        tuning.check_grid(args.grid, rows)
        tuning.check_measure(args.measure)
    except ValueError as err:
        raise HifiError(str(err)) from None
    scores: dict[str, list[dict]] = {}
    per_method = tuning.tuned_rows(rows, args.grid)
    cells = [(m, k, p, tuned) for m, tuned in per_method.items() for k, p in enumerate(args.grid[m])]
    for n, (fit_method, k, point, tuned) in enumerate(cells):
        if shard is None or n % shard[1] == shard[0]:
            summary = run(point_args(args, fit_method, k, point, tuned, seeds, prompts), log)
            for entry in summary["methods"]:
                scores.setdefault(entry["method"], []).append(
                    {"point": k, "args": point, **{m: entry[m]["mean"] for m in tuning.CHOICE_MEASURES}}
                )
    if shard is not None:
        log(f"tune --part {args.part}: its cells are done; run once more without --part to write {record_out}")
        return None
    result = tuning.record("val", seeds, args.grid, rows, scores, args.measure, args.subjects, weights)
    write_atomic(record_out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"), overwrite=args.overwrite)
    for row, chosen in result["choice"].items():
        log(f"{row}: {' '.join(chosen) or '(the config as it is)'}")
    return record_out


def point_args(args: TuneArgs, fit_method: str, k: int, point: list[str], tuned: list[Row], seeds, prompts):
    """The validation ablation of one grid point: its fit method's rows fitted with the point's arguments."""
    return AblationArgs(Path(args.out) / fit_method / f"point{k}", args.method, seeds, args.subjects, prompts,
                        args.images_per_prompt, fit_config=args.fit_config, ti_config=args.ti_config,
                        dreambooth_config=args.dreambooth_config, lora_config=args.lora_config,
                        method_fit_args={fit_method: point}, rows=[r.name for r in tuned], steps=args.steps,
                        guidance=args.guidance, batch_size=args.batch_size, reference=args.reference, split="val",
                        calibration_rows=False)  # fmt: skip
