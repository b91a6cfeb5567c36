"""Bits shared by the commands."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing

from jsonargparse import ArgumentParser, set_parsing_settings

from hifilight.errors import HifiError, OneLineParseErrors
from hifilight.limits import LIMITS
from hifilight.models.loading import note_random_weights  # noqa: F401 (the commands' import of it)

# a typed dataclass of arguments may document each field with a docstring under it (as litgpt's args.py): --help
# shows it
set_parsing_settings(docstring_parse_attribute_docstrings=True)


def check_bounds(values: dict) -> None:
    """One line naming the flag for a numeric value outside its `hifilight.limits.LIMITS` entry (lists, e.g.
    --seeds, are checked element-wise)."""
    for name, value in values.items():
        if name not in LIMITS or value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            problem = LIMITS[name].problem(v)
            if problem is not None:
                raise HifiError(f"--{name} {problem}, got {v}")


class CommandParser(OneLineParseErrors, ArgumentParser):
    """jsonargparse's parser; a bad argument is one line naming the flag, the value and what it takes."""


def args_class(fn) -> type | None:
    """The dataclass of a command written as `fn(args: SomeArgs)` (its fields are the flags), else None."""
    params = list(inspect.signature(fn).parameters)
    if params != ["args"]:
        return None
    try:
        hint = typing.get_type_hints(fn).get("args")
    except (NameError, TypeError):
        return None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def function_parser(fn, prog: str) -> ArgumentParser:
    """A typed parser (with --config) from a command function's signature and docstring, or, for a command that
    takes one typed `args` dataclass, from that dataclass's fields and docstring (the same flat flags)."""
    parser = CommandParser(prog=prog, description=fn.__doc__.splitlines()[0])
    parser.add_argument("--config", action="config")
    cls = args_class(fn)
    if cls is None:
        parser.add_function_arguments(fn, as_positional=False)
    else:
        parser.add_class_arguments(cls)
    return parser


def summary(fn) -> str:
    """The first clause of a function's docstring (up to its first colon or full stop)."""
    return re.split(r"[:.](?:\s|$)", fn.__doc__.strip().splitlines()[0])[0]


def run_group(commands: dict, prog: str, argv: list[str], noun: str = "command") -> None:
    """A command with subcommands (`hifilight toyworld dataset ...`): `--help` lists them with each one's summary
    line; a subcommand gets its own typed parser (and its own --help)."""
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, commands))
        lines = [f"usage: {prog} {{{','.join(commands)}}} [options]", "", "commands:"]
        lines += [f"  {name:<{width}}  {summary(fn)}" for name, fn in commands.items()]
        print("\n".join([*lines, "", f"Run `{prog} <command> --help` for the options of a command."]))
        if not argv:
            raise HifiError(f"{prog}: choose a {noun}: {', '.join(commands)}")
        return
    if argv[0] not in commands:
        raise HifiError(f"{prog} {argv[0]}: unknown {noun}; choose one of {', '.join(commands)}")
    run_function(commands[argv[0]], f"{prog} {argv[0]}", argv[1:])


# list options whose items may contain commas themselves: a value without brackets is one item ("a dog, running")
WHOLE_ITEMS = ("prompts",)


def _list_item_type(annotation) -> type | None:
    """str / int / float for a `list[X]` or `list[X] | None` annotation, else None."""
    for a in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(a) is list and typing.get_args(a) and typing.get_args(a)[0] in (str, int, float):
            return typing.get_args(a)[0]
    return None


def comma_lists(fn, argv: list[str]) -> list[str]:
    """`argv` with list options in the form users type rewritten as the JSON the parser reads: `--subjects can,dog6`
    -> `["can", "dog6"]`, `--seeds 0,1,2` -> `[0, 1, 2]`, `--prompts "a {} on the beach"` -> one prompt. Values
    that already start with "[" are left as they are."""
    try:
        kinds = {n: _list_item_type(t) for n, t in typing.get_type_hints(args_class(fn) or fn).items()}
    except (NameError, TypeError):  # an annotation that cannot be resolved here: leave argv to the parser
        return argv
    out, i = [], 0
    while i < len(argv):
        arg, value, glued = argv[i], None, "=" in argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in kinds and kinds[name] is not None:
            value = arg.split("=", 1)[1] if glued else (argv[i + 1] if i + 1 < len(argv) else None)
        if value is None or value.lstrip().startswith("["):
            out.append(arg)
            i += 1
            continue
        items = [value] if name in WHOLE_ITEMS else [v.strip() for v in value.split(",") if v.strip()]
        text = json.dumps(items) if kinds[name] is str else "[" + ", ".join(items) + "]"
        out += [f"--{name}={text}"] if glued else [arg, text]
        i += 1 if glued else 2
    return out


def run_function(fn, prog: str, argv: list[str]) -> None:
    """Parse `argv` for `fn`, build its dataclass arguments, and call it (with one typed `args` object for a command
    that takes one)."""
    parser = function_parser(fn, prog)
    cfg = parser.instantiate_classes(parser.parse_args(comma_lists(fn, argv)))
    cfg.pop("config", None)
    check_bounds(vars(cfg))
    cls = args_class(fn)
    if cls is None:
        return fn(**vars(cfg))
    args = cls(**vars(cfg))
    if hasattr(args, "check"):  # the dataclass's own checks are usage errors too, reported before anything runs
        try:
            args.check()
        except HifiError as err:
            parser.error(str(err))
    fn(args)
