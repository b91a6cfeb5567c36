"""Named stand-ins that live outside the core and register themselves from below: base models (a name -> a
diffusers folder), mask providers and image encoders. The core looks names up here and never imports a plugin.

A plugin is a function listed under the `hifilight.plugins` entry point group (pyproject.toml); it is called once,
on the first lookup, with this module, and fills the registries. ToyWorld is one (`hifilight.toyworld.plugin`:
"toysd", the "toyworld" masks and the "toyworld" image encoder, and its `hifilight toyworld` command). Tests and
notebooks can register by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

GROUP = "hifilight.plugins"
BASE_MODELS: dict[str, Callable[[], str]] = {}  # name -> a function returning the model's local folder
MASK_PROVIDERS: dict[str, Callable[[], object]] = {}  # name -> a factory of a MaskProvider
IMAGE_ENCODERS: dict[str, Callable[[str], object]] = {}  # name -> a factory (device) of an ImageEncoder
# name -> (the line `hifilight --help` shows, the module whose run(argv) is the command): a plugin's own CLI command
COMMANDS: dict[str, tuple[str, str]] = {}
_loaded = False


def load() -> None:
    """Call every registered plugin once (the entry points of GROUP)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import sys

    for point in entry_points(group=GROUP):
        point.load()(sys.modules[__name__])


def base_model(name: str) -> Callable[[], str] | None:
    load()
    return BASE_MODELS.get(name)


def mask_provider(name: str) -> Callable[[], object] | None:
    load()
    return MASK_PROVIDERS.get(name)


def image_encoder(name: str) -> Callable[[str], object] | None:
    load()
    return IMAGE_ENCODERS.get(name)


def commands() -> dict[str, tuple[str, str]]:
    """The plugins' CLI commands: name -> (help line, module with run(argv))."""
    load()
    return dict(COMMANDS)
