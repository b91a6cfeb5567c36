"""ToyWorld's stand-ins, registered into the core's registries (`hifilight.plugins`, entry point in pyproject.toml):
"toysd" as a base model, ToySAM as the "toyworld" mask provider, ToyDINO as the "toyworld" image encoder."""

from __future__ import annotations

from hifilight.errors import HifiError

NAME = "toyworld"


def toysd_folder() -> str:
    from hifilight.toyworld import world

    FOLDER = world.weights_dir() / "toysd"
    if not (FOLDER / "unet").is_dir():
        raise HifiError(f"--model.pretrained toysd: {FOLDER} has no weights; train them with `make toyworld-train`")
    return str(FOLDER)


def toysam():
    from hifilight.toyworld.perception import ToySamMaskProvider

    return ToySamMaskProvider()


def toydino(device: str = "cpu"):
    from hifilight.toyworld.perception import ToyDinoEncoder

    return ToyDinoEncoder()


COMMAND = (
    "ToyWorld, where the truth of every image is known: dataset, calibrate, tune, ablation, train, serve_subjects",
    "hifilight.commands.toyworld",
)


def register(registry) -> None:
    registry.BASE_MODELS["toysd"] = toysd_folder
    registry.COMMANDS[NAME] = COMMAND
    registry.MASK_PROVIDERS[NAME] = toysam
    registry.IMAGE_ENCODERS[NAME] = toydino
