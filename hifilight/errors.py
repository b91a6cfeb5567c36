"""User-facing errors: one line that names the problem and the fix; the CLI prints them without a traceback."""

from __future__ import annotations

import re


class HifiError(Exception):
    """An error caused by user input (paths, flags, files). The message must say how to fix it."""


def _expected(kind: str) -> str:
    """jsonargparse's name of a type, as a user reads it: "one of a, b" for a Literal, "a float" for a class."""
    choices = re.fullmatch(r"typing\.Literal\[(.*)\]", kind)
    if choices:
        return "one of " + ", ".join(c.strip().strip("'\"") for c in _top_level(choices.group(1)))
    name = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>", kind)
    return f"a value of type {name.group(1)}" if name else kind


def _top_level(text: str) -> list[str]:
    """The comma-separated items of `text` outside brackets ("a[b, c], d" -> ["a[b, c]", "d"])."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [*items, text[start:].strip()]


def one_line_parse_error(message: str, prog: str) -> str:
    """A command-line parser's error (jsonargparse's, several lines for a nested or Union option) as one line:
    the flag, the value given and what it takes, e.g. "--model.dtype float64: use one of float32, float16"."""
    keys = list(dict.fromkeys(re.findall(r'Parser key "([^"]+)"', message)))
    expected = re.search(r"Expected a (.+?)\. Got value: (.*)", message)
    given = re.search(r"Given value: (.*)", message)
    subtypes = re.search(r"Subtypes: \[(.*)\]", message)
    see = f"(see `{prog} --help`)"
    if keys and expected:
        return f"--{'.'.join(keys)} {expected.group(2).strip()}: use {_expected(expected.group(1))} {see}"
    if keys and given and subtypes:
        kinds = [k for k in _top_level(subtypes.group(1)) if "NoneType" not in k]
        return f"--{'.'.join(keys)} {given.group(1).strip()}: use {' or '.join(map(_expected, kinds))} {see}"
    required = re.match(r"the following arguments are required: (.*)", message.strip())
    if required:
        names = ", ".join("--" + n.strip().lstrip("-") for n in required.group(1).split(","))
        return f"missing {names} {see}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), "invalid arguments")
    return f"{first.rstrip(':')} {see}"


class OneLineParseErrors:
    """Mixin for a jsonargparse parser: a bad argument raises HifiError with one line (`one_line_parse_error`)
    instead of printing the usage and a multi-line error. Nested parsers (exit_on_error false) keep raising
    jsonargparse's own error, which the top-level parser catches and condenses."""

    def error(self, message: str, ex: Exception | None = None):
        if not getattr(self, "exit_on_error", True):
            return super().error(message, ex)
        raise HifiError(one_line_parse_error(message, self.prog.replace(" [options]", "")))


RULES = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
}


def check_numbers(*checks: tuple[str, float | None, str]) -> None:
    """(flag, value, rule) for each numeric flag of a module (a rule of RULES; None values are skipped): the first
    value that breaks its rule is one HifiError naming that flag, its rule and the value given."""
    for flag, value, rule in checks:
        if value is not None and not RULES[rule](value):
            raise HifiError(f"{flag} must be {rule}, got {value}")


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted for an error line: whole when short, else its start and its length (a 10 000-character prompt
    must not fill the terminal)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"
