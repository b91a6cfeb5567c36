"""Which ToyWorld a process works in: the object sizes its scenes are drawn with and the folder its trained models
(ToySD, ToyCLIP, the judge, ToySAM) are read from and written to.

"v1" is the committed world (`hifilight/assets/toyworld/`). "v2" is ToySD v2's: larger objects (`scenes.SIZES`),
its models in a folder of their own while they train (`hifilight toyworld train toysd2 --out folder`). `use` sets
both for the whole process, so every render, reader and calibration after it belongs to one world.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from hifilight.toyworld.scenes import SIZES, current_sizes, use_sizes

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "toyworld"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the fit presets ToyWorld's fits start from
_weights = [ASSETS]


def use(name: str, weights: Path | None = None) -> None:
    """Work in world `name` ("v1" or "v2") with its models in `weights` (default: the committed assets)."""
    if name not in SIZES:
        raise ValueError(f"unknown ToyWorld {name!r}; one of {', '.join(SIZES)}")
    use_sizes(name)
    _weights[0] = Path(weights) if weights is not None else ASSETS


def name() -> str:
    return current_sizes()


def weights_dir() -> Path:
    """The folder the current world's models are loaded from and saved to."""
    return _weights[0]


@contextmanager
def using(world: str, weights: Path | None = None):
    """`use` for the duration of a block; the process's world before it is restored after it."""
    before = (name(), weights_dir())
    use(world, weights)
    try:
        yield
    finally:
        use(before[0], before[1])
