"""Tuning on the validation split, the same budget for every method: a grid of fit settings per fit method, each
row scored at every point of its method's grid, the best point per row chosen by one validation measure.

A grid point is a list of `hifilight fit` arguments (e.g. ["--model.learning_rate", "5e-3"]). Every fit method in
the grid gets the same number of points, so no baseline is tuned less than ours. A row that only samples
differently from its base (reference guidance reuses the step-wise fit) is not tuned: it takes its base's choice.
The record (grid, every score, the choice) is what `hifilight toyworld ablation --tuning` reads; it refuses a
record made on the test split.
"""

from __future__ import annotations

import json
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.evaluation.rows import TABLE2, TABLE2_DREAMBOOTH, Row

# The measure that picks a point. Identity (all four attributes right) is the table's headline, but on the few
# validation images a tuning point gets it is a count of a handful of hits (0.05 = 2 of 40 images); the mean
# per-attribute match is the same target measured on every image, so it is the default (`--measure`).
MEASURE, TIE_BREAK = "attributes", "toydino"
CHOICE_MEASURES = ("identity", "attributes", "toydino")


def owns_fit(row: Row, rows: list[Row]) -> bool:
    """False for a row that shares its base row's fitted output (it differs only in sampling)."""
    base = next((r for r in rows if r.name == row.base), None)
    return base is None or base.kind != row.kind or base.artifact_key != row.artifact_key


def tuned_rows(rows: list[Row], grid: dict[str, list[list[str]]]) -> dict[str, list[Row]]:
    """Per fit method of the grid, the rows it tunes."""
    return {m: [r for r in rows if r.kind == m and owns_fit(r, rows)] for m in grid}


def check_grid(grid: dict, rows: list[Row]) -> None:
    """Raise ValueError naming the problem: unknown methods, unequal budgets, points that are not argument lists."""
    if not grid:
        raise ValueError("--grid is empty; give each fit method (hifi_ti, textual_inversion, dreambooth) its points")
    known = {r.kind for r in rows if r.fits}
    for method, points in grid.items():
        if method not in known:
            raise ValueError(f"--grid {method}: no row of this table fits with it; use {', '.join(sorted(known))}")
        if not isinstance(points, list) or not points:
            raise ValueError(f"--grid {method}: give a list of points, each a list of fit arguments")
        for point in points:
            if not isinstance(point, list) or len(point) % 2 or not all(isinstance(a, str) for a in point):
                raise ValueError(f"--grid {method}: {point!r} is not a list of flag/value strings")
    sizes = {m: len(p) for m, p in grid.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"--grid gives the methods unequal budgets {sizes}; give each the same number of points")
    missing = known - grid.keys()
    if missing:
        raise ValueError(f"--grid has no points for {', '.join(sorted(missing))}; every method must be tuned")


def check_measure(measure: str) -> None:
    if measure not in CHOICE_MEASURES:
        raise ValueError(f"--measure {measure!r}: use one of {', '.join(CHOICE_MEASURES)}")


def choose(scores: dict[str, list[dict]], measure: str = MEASURE) -> dict[str, int]:
    """Per row, the index of its best point: the highest `measure`, ties broken by TIE_BREAK, then the first."""
    return {
        row: max(range(len(pts)), key=lambda k: (pts[k][measure], pts[k][TIE_BREAK], -k)) for row, pts in scores.items()
    }


def record(
    split: str,
    seeds: list[int],
    grid: dict,
    rows: list[Row],
    scores: dict[str, list[dict]],
    measure: str = MEASURE,
    subjects: list[str] | None = None,
    weights: str | None = None,
) -> dict:
    """The tuning record: the grid, every score, and each row's chosen arguments (inherited by sampling rows);
    `weights`: the base model's fingerprint (`SDComponents.fingerprint`), so a table on other weights refuses it."""
    best = choose(scores, measure)
    choice = {row: scores[row][k]["args"] for row, k in best.items()}
    for r in rows:
        if r.name not in choice and r.base in choice and not owns_fit(r, rows):
            choice[r.name] = choice[r.base]
    return {
        "split": split,
        "seeds": seeds,
        "subjects": subjects,
        "weights": weights,
        "measure": measure,
        "tie_break": TIE_BREAK,
        "grid": grid,
        "scores": scores,
        "chosen_point": best,
        "choice": choice,
    }


def check_record(data: object, source: str) -> dict[str, list[str]]:
    """The per-row choices of a tuning record, refusing one that is not a validation-split record."""
    if not isinstance(data, dict) or not isinstance(data.get("choice"), dict):
        raise ValueError(f"{source}: not a tuning record (no 'choice'); write one with `hifilight toyworld tune`")
    if data.get("split") != "val":
        raise ValueError(f"{source}: tuned on split {data.get('split')!r}; settings must be chosen on 'val' only")
    for row, args in data["choice"].items():
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{source}: choice for {row!r} is not a list of argument strings")
    return data["choice"]


def row_choices(choice: dict[str, list[str]], rows: list[Row]) -> dict[str, list[str]]:
    """Each row's tuned arguments: its own, or, for a row the record does not name (e.g. "Ours" of --method
    ti_vs_ours, the demo), those of the Table 2 row that fits the same way (same fit method and fitted output)."""
    out = dict(choice)
    for r in rows:
        twins = [t.name for t in TABLE2 + TABLE2_DREAMBOOTH if (t.kind, t.artifact_key) == (r.kind, r.artifact_key)]
        twin = next((name for name in twins if name in choice), None)
        if r.name not in out and twin is not None:
            out[r.name] = choice[twin]
    return out


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
