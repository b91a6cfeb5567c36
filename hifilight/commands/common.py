"""Bits shared by the commands."""

from __future__ import annotations

import re

from jsonargparse import ArgumentParser

from hifilight.errors import HifiError, OneLineParseErrors
from hifilight.models.loading import note_random_weights  # noqa: F401 (the commands' import of it)

# The range of every numeric flag of that name, in every command (checked after parsing, before any model loads).
# Generation beyond these sizes is not a use case on any GPU we know; fits have their own checks in the modules.
BOUNDS: dict[str, tuple[float, float]] = {
    "steps": (1, 1000), "num_images": (1, 10_000), "images_per_prompt": (1, 1000),
    "batch_size": (1, 4096), "resolution": (8, 4096), "size": (16, 4096), "guidance": (0.0, 100.0),
    "seed": (0, 2**63 - 1), "seeds": (0, 2**63 - 1), "photos": (1, 8), "devices": (1, 1024), "threads": (0, 1024),
}  # fmt: skip
MULTIPLE_OF_8 = ("resolution", "size")


def check_bounds(values: dict) -> None:
    """One line naming the flag for a numeric value outside BOUNDS (lists, e.g. --seeds, are checked element-wise)."""
    for name, value in values.items():
        if name not in BOUNDS or value is None:
            continue
        low, high = BOUNDS[name]
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not low <= v <= high:  # also catches NaN
                raise HifiError(f"--{name} must be in {low}..{high}, got {v}")
            if name in MULTIPLE_OF_8 and v % 8:
                raise HifiError(f"--{name} must be a multiple of 8, got {v}")


class CommandParser(OneLineParseErrors, ArgumentParser):
    """jsonargparse's parser; a bad argument is one line naming the flag, the value and what it takes."""


def function_parser(fn, prog: str) -> ArgumentParser:
    """A typed parser (with --config) from a command function's signature and docstring."""
    parser = CommandParser(prog=prog, description=fn.__doc__.splitlines()[0])
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(fn, as_positional=False)
    return parser


def summary(fn) -> str:
    """The first clause of a function's docstring (up to its first colon or full stop)."""
    return re.split(r"[:.](?:\s|$)", fn.__doc__.strip().splitlines()[0])[0]


def run_group(commands: dict, prog: str, argv: list[str]) -> None:
    """A command with subcommands (`hifilight toyworld dataset ...`): `--help` lists them with each one's summary
    line; a subcommand gets its own typed parser (and its own --help)."""
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, commands))
        lines = [f"usage: {prog} {{{','.join(commands)}}} [options]", "", "commands:"]
        lines += [f"  {name:<{width}}  {summary(fn)}" for name, fn in commands.items()]
        print("\n".join([*lines, "", f"Run `{prog} <command> --help` for the options of a command."]))
        if not argv:
            raise HifiError(f"{prog}: choose a command: {', '.join(commands)}")
        return
    if argv[0] not in commands:
        raise HifiError(f"{prog} {argv[0]}: unknown command; choose one of {', '.join(commands)}")
    run_function(commands[argv[0]], f"{prog} {argv[0]}", argv[1:])


def run_function(fn, prog: str, argv: list[str]) -> None:
    """Parse `argv` for `fn`, build its dataclass arguments, and call it."""
    parser = function_parser(fn, prog)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    cfg.pop("config", None)
    check_bounds(vars(cfg))
    fn(**vars(cfg))
