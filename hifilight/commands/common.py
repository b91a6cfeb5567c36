"""Bits shared by the commands."""

from __future__ import annotations

import sys

import torch

from hifilight.models.tiny import PRESETS

RANDOM_WEIGHTS_NOTE = (
    "NOTE: built-in model preset has random weights: it proves the code path, its images are not meaningful. "
    "For real results add --model.pretrained CompVis/stable-diffusion-v1-4 (hub id or local folder)."
)


def note_random_weights(pretrained: str) -> None:
    if pretrained in PRESETS:
        print(RANDOM_WEIGHTS_NOTE, file=sys.stderr)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
