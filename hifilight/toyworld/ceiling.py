"""The fine-tuning ceiling of the ToyWorld instrument: DreamBooth, which tunes the whole UNet on a subject's photos,
asked to draw the subject on its own training prompt ("a photo of a sks star") and in the new scenes of every table.
A generator that no method can steer shows it here first (the ToySD v2 issue); a method's row above this one would
be suspicious.

Fits are cached per base model (its weights' fingerprint) and subject under `Ceiling.cache`, so a calibration that
is run again, or continued, fits each subject once. The DreamBooth setting must be chosen on the validation split
(`hifilight toyworld tune`); `calibrate --dreambooth true` reads it from the tuning record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.toyworld.dataset import PROMPTS, write_dataset
from hifilight.toyworld.scenes import ToyObject
from hifilight.toyworld.world import CONFIGS

DREAMBOOTH, DREAMBOOTH_OWN = "dreambooth", "dreambooth_own_prompt"
LABELS = {
    DREAMBOOTH: "DreamBooth fitted on the subject's photos, new scenes (fine-tuning ceiling)",
    DREAMBOOTH_OWN: "the same DreamBooth model on its training prompt, 'a photo of a sks star'",
}
OWN_PROMPT = "a photo of a {0} {1}"  # the fit's caption template with the identifier: the subject, no scene


@dataclass(frozen=True)
class Ceiling:
    """How the ceiling is fitted: `hifilight fit --method dreambooth --config <config> <args>` per subject."""

    config: Path
    args: tuple[str, ...] = ()
    cache: Path = Path("outputs/toyworld_ceiling")
    identifier: str = "sks"
    extra: dict = field(default_factory=dict)  # more fit options by flag name (tests: fewer class images)


def fitted(comps, name: str, obj: ToyObject, seed: int, ceiling: Ceiling) -> Path:
    """The DreamBooth folder of subject `name` on `comps`' weights: fitted once, then read from the cache."""
    from hifilight.training.fit_cli import fit

    folder = Path(ceiling.cache) / comps.fingerprint()
    model = folder / name
    if not (model / "model_index.json").is_file():
        photos = write_dataset(folder / "data", [name], seed=seed, overwrite=True)[0]
        options = {
            "model.pretrained": comps.name,
            "model.identifier": ceiling.identifier,
            # the prior's class images belong to these weights too (a shared folder would mix two models' images)
            "model.class_dir": str(folder / "class_images" / obj.shape),
            **ceiling.extra,
        }
        fit("dreambooth", photos, obj.shape, model, config=ceiling.config, args=ceiling.args, options=options)
    return model


def ceiling_cells(comps, subjects: dict[str, ToyObject], prompts: list[int], n: int, seed: int, steps: int,
                  guidance: float, batch_size: int, ceiling: Ceiling) -> list:  # fmt: skip
    """The two ceiling rows' cells for every subject: its DreamBooth model on each of `prompts` and on its own
    training prompt, with the identifier ("a sks star on the beach"), images seeded as the text rows'."""
    from hifilight.models import load_components
    from hifilight.toyworld.calibrate import Cell, text_images

    cells = []
    for name, obj in subjects.items():
        tuned = load_components(str(fitted(comps, name, obj, seed, ceiling)), device=comps.unet.device)
        asks = [
            (i, PROMPTS[i].format(ceiling.identifier, obj.shape), PROMPTS[i].format("", obj.shape)) for i in prompts
        ]
        own = OWN_PROMPT.format(ceiling.identifier, obj.shape)
        images = text_images(tuned, [text for _, text, _ in asks] + [own], n, seed, steps, guidance, batch_size)
        cells += [Cell(DREAMBOOTH, name, i, asked, imgs) for (i, _, asked), imgs in zip(asks, images, strict=False)]
        cells.append(Cell(DREAMBOOTH_OWN, name, -1, OWN_PROMPT.format("", obj.shape), images[-1]))
    return cells


def ceiling_setting(comps, tuning: Path, args: list[str] | None, fits: Path) -> Ceiling:
    """The fine-tuning ceiling's DreamBooth setting: given, or the validation choice in `tuning` for these weights."""
    if args is None:
        if not Path(tuning).is_file():
            raise HifiError(f"--tuning {tuning}: no such file; run `hifilight toyworld tune` or pass --dreambooth_args")
        record = json.loads(Path(tuning).read_text())
        if record.get("split") != "val" or "dreambooth" not in record.get("choice", {}):
            raise HifiError(f"--tuning {tuning}: not a validation record with a DreamBooth choice")
        if record.get("weights") not in (None, comps.fingerprint()):
            raise HifiError(
                f"--tuning {tuning}: chosen on weights {record['weights']}, not these ({comps.fingerprint()}); "
                "tune DreamBooth on these weights' validation split or pass --dreambooth_args"
            )
        args = record["choice"]["dreambooth"]
    return Ceiling(CONFIGS / "toyworld_dreambooth.yaml", tuple(args), Path(fits))
