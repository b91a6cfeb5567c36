"""Bits shared by the commands."""

from __future__ import annotations

import sys

import torch
from jsonargparse import ArgumentParser

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


def function_parser(fn, prog: str) -> ArgumentParser:
    """A typed parser (with --config) from a command function's signature and docstring."""
    parser = ArgumentParser(prog=prog, description=fn.__doc__.splitlines()[0])
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(fn, as_positional=False)
    return parser


def run_function(fn, prog: str, argv: list[str]) -> None:
    """Parse `argv` for `fn`, build its dataclass arguments, and call it."""
    parser = function_parser(fn, prog)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    cfg.pop("config", None)
    fn(**vars(cfg))
