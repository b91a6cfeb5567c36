"""ToyWorld's tables from scored cells: `toyworld_results.csv` (one line per seed x row x subject x prompt),
`toyworld_summary.json` and `toyworld_table.md` (per row: the mean over seeds of the mean over cells, the
standard deviation over seeds and a bootstrap 95% interval; then each ladder step's paired change against its base
row, with its interval), and the small JSON record. The pictures and the plot are `hifilight.toyworld.figures`'.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from hifilight.evaluation.rows import Row
from hifilight.evaluation.stats import bootstrap_ci, verdict
from hifilight.io import write_atomic
from hifilight.toyworld import calibrate as calibration
from hifilight.toyworld.cells import COLUMNS, LABELS
from hifilight.toyworld.fidelity import MEASURES


def summarize(cells: list[dict], rows: list[Row], seeds: list[int]) -> dict:
    """Per row and measure: mean over seeds of the per-seed mean over cells, and the standard deviation over seeds
    (0 with one seed)."""
    methods = []
    for row in rows:
        entry = {"method": row.name, "label": row.label, "kind": row.kind}
        units = _unit_means(cells, row)
        for m in MEASURES:
            per_seed = [
                statistics.fmean(c[m] for c in cells if c["method"] == row.name and c["seed"] == s) for s in seeds
            ]
            entry[m] = {"mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed), "per_seed": per_seed}
            entry[m]["ci95"] = row_interval(units, m)
        entry["cells"] = sum(c["method"] == row.name for c in cells)
        methods.append(entry)
    add_normalised(methods)
    return {"seeds": seeds, "methods": methods, "gains": step_gains(cells, [r for r in rows if r.kind != "real"])}


def row_interval(units: dict[tuple, dict[str, float]], measure: str) -> dict[str, float]:
    """The bootstrap 95% interval of a row's mean of `measure` over its (seed, subject) units, resampling subjects
    with all their seeds (as the steps' intervals do)."""
    keys = sorted(units)
    low, high = bootstrap_ci([units[u][measure] for u in keys], [u[1] for u in keys]) if keys else (0.0, 0.0)
    return {"low": low, "high": high}


def add_normalised(methods: list[dict]) -> None:
    """Each row's identity between the class-word floor (0) and the text oracle (1), when both rows are there."""
    by_name = {m["method"]: m for m in methods}
    if calibration.FLOOR in by_name and calibration.ORACLE in by_name:
        floor, oracle = (by_name[r]["identity"]["mean"] for r in (calibration.FLOOR, calibration.ORACLE))
        for m in methods:
            m["normalised_identity"] = calibration.normalised(m["identity"]["mean"], floor, oracle)


def _unit_means(cells: list[dict], row: Row) -> dict[tuple, dict[str, float]]:
    """Per (seed, subject): the row's mean over its prompts of every measure."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        if c["method"] == row.name:
            groups.setdefault((c["seed"], c["subject"]), []).append(c)
    return {unit: {m: statistics.fmean(c[m] for c in group) for m in MEASURES} for unit, group in groups.items()}


MIN_SUBJECTS = 3  # fewer subjects give no interval worth a verdict (one subject: zero width)


def ladder_steps(rows: list[Row]) -> list[tuple[Row, Row]]:
    """(before, after) for every row whose `base` row is in the table: Table 2's one-technique steps."""
    by_name = {r.name: r for r in rows}
    return [(by_name[r.base], r) for r in rows if r.base in by_name]


def step_gains(cells: list[dict], rows: list[Row]) -> list[dict]:
    """What each row changes against its base row (Table 2's rows add one technique each), paired per (seed,
    subject): the mean of the differences of their means over prompts, its bootstrap 95% interval (resampling
    subjects, see hifilight.evaluation.stats), how many pairs rose and fell, the verdict the interval gives, and
    the differences themselves. Pairing takes out the subject-to-subject spread that dominates the spread over
    seeds."""
    means = {row.name: _unit_means(cells, row) for row in rows}
    gains = []
    for before, after in ladder_steps(rows):
        a, b = means[before.name], means[after.name]
        units = sorted(a.keys() & b.keys())
        entry = {
            "from": before.label,
            "to": after.label,
            "from_method": before.name,
            "to_method": after.name,
            "pairs": len(units),
            "units": [list(u) for u in units],
        }
        clusters = [u[1] for u in units]  # subjects: resampled whole, with all their seeds
        for m in MEASURES:
            diffs = [b[u][m] - a[u][m] for u in units]
            low, high = bootstrap_ci(diffs, clusters) if diffs else (0.0, 0.0)
            word = verdict(low, high) if len(set(clusters)) >= MIN_SUBJECTS else f"n/a (< {MIN_SUBJECTS} subjects)"
            entry[m] = {
                "mean": statistics.fmean(diffs) if diffs else 0.0,
                "ci95": {"low": low, "high": high},
                "verdict": word,
                "up": sum(d > 0 for d in diffs),
                "down": sum(d < 0 for d in diffs),
                "diffs": diffs,
            }
        gains.append(entry)
    return gains


def gains_markdown(gains: list[dict]) -> list[str]:
    """The step table: per step, the mean paired change of each measure with its 95% interval, and the verdict
    on identity."""
    if not gains:
        return []
    heads = [f"Δ {m} [95% CI]" for m in MEASURES]
    lines = ["| Change | " + " | ".join(heads) + " | identity verdict |", "| --- " * (len(MEASURES) + 2) + "|"]
    for g in gains:
        values = [f"{g[m]['mean']:+.3f} [{g[m]['ci95']['low']:+.3f}, {g[m]['ci95']['high']:+.3f}]" for m in MEASURES]
        lines.append(f"| {g['from']} → {g['to']} | " + " | ".join(values) + f" | {g['identity']['verdict']} |")
    return [
        "",
        *lines,
        "",
        f"Each row against its base row, paired per seed and subject ({gains[0]['pairs']} pairs): the mean "
        "change of the per-pair means over prompts and its bootstrap 95% interval (subjects resampled with all "
        'their seeds); the verdict is "helps" / "hurts" when the interval excludes 0, else "no '
        'measurable effect".',
    ]


def markdown(summary: dict, protocol: str) -> str:
    norm = any("normalised_identity" in e for e in summary["methods"])
    heads = [LABELS[m] for m in MEASURES] + (["identity, normalised ↑"] if norm else [])
    lines = ["| Method | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    for entry in summary["methods"]:
        values = [f"{entry[m]['mean']:.3f} ± {entry[m]['std']:.3f}" for m in MEASURES]
        if norm:
            n = entry.get("normalised_identity")
            values.append("n/a" if n is None else f"{n:.2f}")
        lines.append(f"| {entry['label']} | " + " | ".join(values) + " |")
    lines += [
        "",
        protocol,
        "",
        "identity: share of images whose object has all the subject's attributes (shape, colour, pattern, "
        "pattern colour; the colour is left out for recolour prompts); attributes: mean per-attribute match; "
        "confidence: the classifier's mean probability of the subject's values; ToyDINO: cosine to the "
        "source photos; prompt: share of images with the background (or colour) the prompt asks for; "
        "identity, normalised: (row - floor) / (oracle - floor), 0 at the class-word floor, 1 at the text "
        "oracle. "
        "Mean over seeds of the mean over cells, ± the standard deviation over seeds. ToyWorld is a toy: "
        "these numbers say what the techniques do on ToySD, not on Stable Diffusion.",
        *gains_markdown(summary["gains"]),
    ]
    return "\n".join(lines) + "\n"


def table_record(summary: dict, split: str, protocol: str, tuning: dict | None, weights: str | None = None) -> dict:
    """The table as a small JSON (docs/toyworld/table2.json): split, seeds, protocol, the base model's weights
    fingerprint (`SDComponents.fingerprint`), tuning, each row's measures and each ladder step's paired mean
    difference with its interval, verdict and per-pair differences."""
    steps = [
        {
            "from": g["from_method"],
            "to": g["to_method"],
            "from_label": g["from"],
            "to_label": g["to"],
            "pairs": g["pairs"],
            "units": g["units"],
            **{m: g[m] for m in MEASURES},
        }
        for g in summary["gains"]
    ]
    return {
        "split": split,
        "seeds": summary["seeds"],
        "protocol": protocol,
        "weights": weights,
        "tuning": tuning,
        "rows": summary["methods"],
        "steps": steps,
    }


def write_report(out: Path, cells: list[dict], summary: dict, protocol: str) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(cells)
    write_atomic(out / "toyworld_results.csv", lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)
    write_atomic(
        out / "toyworld_summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), overwrite=True
    )
    table = markdown(summary, protocol)
    write_atomic(out / "toyworld_table.md", lambda tmp: tmp.write_text(table), overwrite=True)
    return table
