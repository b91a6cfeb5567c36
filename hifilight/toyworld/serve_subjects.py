"""The service's embedded subjects (`serve/subjects/`): one ToyWorld test subject learnt on ToySD three ways, each
file with its source photos beside it for reference-guided generation, so `make serve` on a fresh clone serves
subjects that generate. `hifilight toyworld serve_subjects` re-makes them (after a new ToySD: subjects are tied to
the text encoder and UNet they were fitted on, and the service skips a subject of another base model).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hifilight.errors import HifiError
from hifilight.io import check_writable
from hifilight.toyworld.dataset import HELD_OUT, write_dataset
from hifilight.toyworld.world import CONFIGS

# file stem -> method, fit config, options over it. The settings are Table 2's (TI, HiFi) and the LoRA rows' (chosen
# on the validation split: docs/toyworld/tuning.json, tuning_lora.json).
FITS = {
    "star": ("hifi_ti", "toyworld_hifi.yaml", {}),
    "star_ti": ("textual_inversion", "toyworld_ti.yaml", {"model.max_steps": 150}),
    "star_lora": ("lora", "toyworld_lora.yaml", {"model.learning_rate": 5e-4, "model.max_steps": 200}),
}


def make(out: Path, subject: str = "blue_star_yellow_dots", overwrite: bool = False, log=print) -> list[Path]:
    """Fit `subject` with every method of FITS on ToySD and write `<stem>.safetensors` and `<stem>/` (its photos) for
    each into `out`; nothing in `out` changes until every fit has succeeded. Returns the subject files."""
    from hifilight.api import fit

    if subject not in HELD_OUT:
        raise HifiError(f"--subject {subject}: not a ToyWorld subject; choose from {', '.join(HELD_OUT)}")
    out = Path(out)
    targets = [out / f"{stem}.safetensors" for stem in FITS] + [out / stem for stem in FITS]
    for path in targets:
        check_writable(path, overwrite, "--overwrite")
    with tempfile.TemporaryDirectory(prefix="serve_subjects_") as tmp:
        photos = write_dataset(Path(tmp) / "data", [subject])[0]
        made = Path(tmp) / "made"
        for stem, (method, config, options) in FITS.items():
            log(f"fitting {stem} ({method}) on ToySD ...")
            fit(photos, HELD_OUT[subject].shape, made / f"{stem}.safetensors", method, config=CONFIGS / config,
                options=options)  # fmt: skip
            shutil.copytree(photos, made / stem)  # photos and their masks (DreamBench layout)
        out.mkdir(parents=True, exist_ok=True)
        for path in targets:
            if path.is_dir():
                shutil.rmtree(path)
            shutil.move(made / path.name, path)
    return [out / f"{stem}.safetensors" for stem in FITS]
