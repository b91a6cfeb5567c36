"""The DreamBench protocol runner: for each method row and subject, fit (or reuse) the subject, generate every prompt,
score DINO / CLIP-I / CLIP-T, and write results.csv, summary.json and a Table 1 / Table 2 style markdown table.

Everything it makes is kept on disk and reused: artifacts (`artifacts/<subject>/<switches>.safetensors`), images
(`<row>/<subject>/p<prompt>_<i>.png`) and scored cells (rows of results.csv). A rerun with the same `--out` only does
what is missing; `protocol.json` records the scoring protocol and a rerun with another protocol is refused.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hifilight.data.images import load_rgb
from hifilight.errors import HifiError
from hifilight.evaluation.dreambench import BenchSubject, render
from hifilight.evaluation.metrics import CLIPImageScore, CLIPTextScore, DINOScore, real_vs_real
from hifilight.evaluation.rows import Row
from hifilight.io import save_png, write_atomic
from hifilight.sampling.generate import Job


@dataclass
class EvalSettings:
    """What the runner needs besides the models (see `hifilight evaluate --help` for each)."""

    out: Path
    images_per_prompt: int = 4
    prompts: list[int] | None = None
    steps: int = 50
    guidance: float = 7.5
    resolution: int = 512
    batch_size: int = 4
    seed: int = 0
    clip_t_text: str = "class"
    reference_on_live: bool = False
    base_model: str = ""
    shard: tuple[int, int] | None = None  # (k, n): this process scores subjects k, k+n, ... into its own file
    print_table: bool = True  # print the DINO / CLIP table at the end (table.md is written either way)
    fit: Callable[[BenchSubject, Row, Path], None] | None = None  # writes the fitted output of (subject, row)


COLUMNS = ["method", "label", "subject", "class", "live", "prompt_index", "prompt", "images", "reference_applied",
           "dino", "dino_pairs", "clip_i", "clip_i_pairs", "clip_t", "clip_t_pairs"]  # fmt: skip


@dataclass
class Runner:
    settings: EvalSettings
    comps_loader: Callable[[str], object]  # model name or folder -> SDComponents
    dino: object
    clip: object
    pairing: str = "all"
    scale100: bool = False
    reference_guide: Callable | None = None  # (Subject, BenchSubject) -> ReferenceGuide
    rows: dict[tuple, dict] = field(default_factory=dict)
    _comps: object = None
    _real: dict[str, tuple] = field(default_factory=dict)

    @property
    def comps(self):
        if self._comps is None:
            self._comps = self.comps_loader(self.settings.base_model)
        return self._comps

    def protocol(self) -> dict:
        return {
            "dino": DINOScore(self.dino, self.pairing, self.scale100).protocol(),
            "clip_i": CLIPImageScore(self.clip, self.pairing, self.scale100).protocol(),
            "clip_t": {**CLIPTextScore(self.clip, self.scale100).protocol(), "text": self.settings.clip_t_text},
            "images_per_prompt": self.settings.images_per_prompt,
            "steps": self.settings.steps,
            "guidance": self.settings.guidance,
            "resolution": self.settings.resolution,
            "seed": self.settings.seed,
            "base_model": self.settings.base_model,
        }

    # ---- resume -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        out = self.settings.out
        out.mkdir(parents=True, exist_ok=True)
        protocol, path = self.protocol(), out / "protocol.json"
        if path.is_file() and json.loads(path.read_text()) != json.loads(json.dumps(protocol)):
            raise HifiError(
                f"--out {out}: holds results made with another protocol ({path}); use a new --out to compare"
            )
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(protocol, indent=2)), overwrite=True)
        self._load(out / "results.csv")
        if self.settings.shard is not None:
            self._load(out / self.results_file)
            return
        shards = sorted(out.glob("results.shard*.csv"))  # left by shard processes: merge them
        for shard in shards:
            self._load(shard)
        if shards:
            self._save_rows()
            for shard in shards:
                shard.unlink()

    @property
    def results_file(self) -> str:
        return "results.csv" if self.settings.shard is None else f"results.shard{self.settings.shard[0]}.csv"

    def _load(self, path: Path) -> None:
        if path.is_file():
            with path.open(newline="") as f:
                for r in csv.DictReader(f):
                    self.rows[(r["method"], r["subject"], int(r["prompt_index"]))] = r

    def _save_rows(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows.values())
        path = self.settings.out / self.results_file
        write_atomic(path, lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)

    # ---- work ---------------------------------------------------------------------------------------------------
    def run(self, rows: list[Row], subjects: list[BenchSubject]) -> dict:
        """Score every (row, subject, prompt) not on disk yet; a shard does only its share and reports nothing."""
        self.start()
        mine = subjects if self.settings.shard is None else subjects[self.settings.shard[0] :: self.settings.shard[1]]
        for row in rows:
            for subject in mine:
                print(f"evaluate: {row.label} / {subject.name}", file=sys.stderr)
                self._real_vs_real(row, subject) if row.kind == "real" else self._generated(row, subject)
        return {} if self.settings.shard is not None else self.finish(rows, subjects)

    def _real_embeddings(self, subject: BenchSubject) -> tuple:
        if subject.name not in self._real:
            from hifilight.data.images import list_images

            images = [load_rgb(p) for p in list_images(subject.folder, flag=f"subject {subject.name}")]
            self._real[subject.name] = (self.dino.encode_images(images), self.clip.encode_images(images))
        return self._real[subject.name]

    def _real_vs_real(self, row: Row, subject: BenchSubject) -> None:
        key = (row.name, subject.name, -1)
        if key in self.rows:
            return
        dino, clip = self._real_embeddings(subject)
        scale = 100.0 if self.scale100 else 1.0
        (d, dn), (c, cn) = real_vs_real(dino), real_vs_real(clip)
        self.rows[key] = self._record(
            row, subject, -1, "", len(dino), False, scale * float(d / dn), dn, scale * float(c / cn), cn, None, 0
        )
        self._save_rows()

    def _prompt_indices(self, subject: BenchSubject) -> list[int]:
        indices = self.settings.prompts if self.settings.prompts is not None else range(len(subject.prompts))
        bad = [i for i in indices if not 0 <= i < len(subject.prompts)]
        if bad:
            raise HifiError(f"--prompts {bad}: indices must be in 0..{len(subject.prompts) - 1}")
        return list(indices)

    def _generated(self, row: Row, subject: BenchSubject) -> None:
        todo = [i for i in self._prompt_indices(subject) if (row.name, subject.name, i) not in self.rows]
        if not todo:
            return
        folder = self.settings.out / row.name / subject.name
        fitted = self._fitted(row, subject) if row.kind != "sd" else None
        identifier = fitted.identifier if fitted is not None else ""
        applied = row.reference and (not subject.live or self.settings.reference_on_live)
        self._make_images(subject, fitted, todo, folder, applied, row.stepwise)
        for i in todo:
            self._score(row, subject, i, folder, applied, identifier)
            self._save_rows()

    def _fitted(self, row: Row, subject: BenchSubject):
        """The subject as fitted for this row (fitting it first when it is not on disk)."""
        from hifilight.subjects import load_subject

        path = self.settings.out / "artifacts" / subject.name / row.artifact_key
        if not path.exists():
            if self.settings.fit is None:
                raise HifiError(f"{path}: not fitted and no fit configured")
            self.settings.fit(subject, row, path)
        return load_subject(path)

    def _model_for(self, fitted):
        """The components to generate with: shared for the base model and HiFi embeddings; a fresh copy with the
        tokens added for Textual Inversion; the fine-tuned folder for DreamBooth."""
        if fitted is None or fitted.kind == "hifi":
            return self.comps
        comps = self.comps_loader(fitted.base_model if fitted.kind == "dreambooth" else self.settings.base_model)
        # Textual Inversion adds tokens, LoRA adapters: both on this fresh copy
        fitted.prepare(comps)
        return comps

    def image_paths(self, folder: Path, index: int) -> list[Path]:
        return [folder / f"p{index:02d}_{k}.png" for k in range(self.settings.images_per_prompt)]

    def _make_images(self, subject, fitted, todo, folder, applied, stepwise) -> None:
        from hifilight.sampling.renderer import SubjectRenderer

        s = self.settings
        identifier = fitted.identifier if fitted is not None else ""
        jobs, paths = [], []
        for i in todo:
            text = render(subject.prompts[i], identifier, subject.class_name)
            for k, path in enumerate(self.image_paths(folder, i)):
                if not path.is_file():
                    jobs.append(Job(subject.prompts[i], text, s.seed + k))
                    paths.append(path)
        if not jobs:
            return
        artifact = fitted.artifact if fitted is not None else None
        guide = self.reference_guide(fitted, subject) if applied else None
        renderer = SubjectRenderer(self._model_for(fitted))  # _model_for prepared the subject on its components
        renderer.set_subject(fitted, stepwise if artifact is not None else None, guide, prepare=False)
        rendered = renderer.render(jobs, s.steps, s.guidance, s.resolution, s.batch_size, guided=applied)
        for result, path in zip(rendered, paths, strict=True):
            save_png(result.image, path, overwrite=True)

    def _score(self, row, subject, index, folder, applied, identifier) -> None:
        real_dino, real_clip = self._real_embeddings(subject)
        images = [Image.open(p).convert("RGB") for p in self.image_paths(folder, index)]
        gen_clip = self.clip.encode_images(images)
        dino = DINOScore(pairing=self.pairing, scale100=self.scale100)
        dino.update(self.dino.encode_images(images), real_dino)
        clip_i = CLIPImageScore(pairing=self.pairing, scale100=self.scale100)
        clip_i.update(gen_clip, real_clip)
        clip_t = CLIPTextScore(scale100=self.scale100)
        clip_t.update(gen_clip, self.clip.encode_texts([self.clip_t_text(identifier, subject, index)]))
        self.rows[(row.name, subject.name, index)] = self._record(
            row,
            subject,
            index,
            subject.prompts[index],
            len(images),
            applied,
            dino.compute().item(),
            int(dino.count),
            clip_i.compute().item(),
            int(clip_i.count),
            clip_t.compute().item(),
            int(clip_t.count),
        )

    def clip_t_text(self, identifier: str, subject: BenchSubject, index: int) -> str:
        """CLIP-T's text: the prompt with the class word only ("class"), or with the method's identifier too
        ("identifier"; same as "class" for methods without one, such as output-space embeddings)."""
        identifier = identifier if self.settings.clip_t_text == "identifier" else ""
        return render(subject.prompts[index], identifier, subject.class_name)

    @staticmethod
    def _record(row, subject, index, prompt, n, applied, dino, dino_n, clip_i, clip_i_n, clip_t, clip_t_n) -> dict:
        clip_t = "" if clip_t is None else clip_t
        return {
            "method": row.name,
            "label": row.label,
            "subject": subject.name,
            "class": subject.class_name,
            "live": subject.live,
            "prompt_index": index,
            "prompt": prompt,
            "images": n,
            "reference_applied": applied,
            "dino": dino,
            "dino_pairs": dino_n,
            "clip_i": clip_i,
            "clip_i_pairs": clip_i_n,
            "clip_t": clip_t,
            "clip_t_pairs": clip_t_n,
        }

    # ---- report -------------------------------------------------------------------------------------------------
    def finish(self, rows: list[Row], subjects: list[BenchSubject]) -> dict:
        """summary.json and table.md over the requested rows, subjects and prompts."""
        summary = {"protocol": self.protocol(), "subjects": [s.name for s in subjects], "methods": []}
        names = {s.name for s in subjects}
        for row in rows:
            cells = [
                r
                for r in self.rows.values()
                if r["method"] == row.name
                and r["subject"] in names
                and (
                    int(r["prompt_index"]) < 0
                    or self.settings.prompts is None
                    or int(r["prompt_index"]) in self.settings.prompts
                )
            ]
            summary["methods"].append(
                {
                    "method": row.name,
                    "label": row.label,
                    "cells": len(cells),
                    **{m: weighted(cells, m) for m in ("dino", "clip_i", "clip_t")},
                }
            )
        out = self.settings.out
        write_atomic(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), overwrite=True)
        table = markdown_table(summary)
        write_atomic(out / "table.md", lambda tmp: tmp.write_text(table), overwrite=True)
        if self.settings.print_table:
            print(table)
        return summary


def weighted(cells: list[dict], metric: str) -> float | None:
    """The metric over all cells' pairs: sum(value * pairs) / sum(pairs); None when no cell has it."""
    pairs = [(float(c[metric]), int(c[f"{metric}_pairs"])) for c in cells if str(c[metric]) != ""]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def markdown_table(summary: dict) -> str:
    fmt = lambda v: "N/A" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| Method | DINO ↑ | CLIP-I ↑ | CLIP-T ↑ |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {m['label']} | {fmt(m['dino'])} | {fmt(m['clip_i'])} | {fmt(m['clip_t'])} |" for m in summary["methods"]
    ]
    p = summary["protocol"]
    lines += [
        "",
        f"Protocol: DINO {p['dino']['encoder']}, CLIP {p['clip_i']['encoder']}, pairing "
        f"{p['dino']['pairing']}, x100 {p['dino']['scale100']}, CLIP-T text with the {p['clip_t']['text']} "
        f"word, {p['images_per_prompt']} images per prompt, DDIM {p['steps']} steps, guidance {p['guidance']}, "
        f"{p['resolution']} px, base model {p['base_model']}.",
    ]
    if "tiny" in (p["base_model"], p["dino"]["encoder"], p["clip_i"]["encoder"]):
        lines += ["", "Random-weight models: these numbers prove the code path, not image quality or fidelity."]
    return "\n".join(lines) + "\n"
