"""`hifilight <command> ...`: dispatch to one module per command; user errors print one line, no traceback."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

# The core's command table: name -> the line `hifilight --help` shows. Each command is the module
# hifilight.commands.<name>, whose run(argv) parses its own options; only the command that runs is imported. Plugins
# add their own (`hifilight.plugins.COMMANDS`): the core names none of them.
COMMANDS = {
    "fit": "learn a subject embedding from a few photos (LightningCLI; --help for all options)",
    "predict": "generate images of a learned subject",
    "attention": "cross-attention maps of the subject tokens across steps (paper Figure 3)",
    "masks": "write subject masks (white = subject) and an overlay grid to check them",
    "invert": "DDIM + null-text inversion of a photo, with reconstruction PSNRs",
    "replace": "put a learned subject into a real photo (Algorithm 3)",
    "evaluate": "the DreamBench protocol: fit, generate, score DINO / CLIP-I / CLIP-T, write tables",
    "export": "onnx (diffusers' ONNX layout), checkpoint (a diffusers folder as one .safetensors), lora (kohya layout)",
}


def all_commands() -> dict[str, tuple[str, str]]:
    """The core's commands and those plugins register (`hifilight.plugins.COMMANDS`): name -> (line, module)."""
    from hifilight import plugins

    core = {name: (line, f"hifilight.commands.{name}") for name, line in COMMANDS.items()}
    return core | {name: entry for name, entry in plugins.commands().items() if name not in core}


def usage() -> str:
    commands = all_commands()
    width = max(map(len, commands))
    lines = [f"  {name:<{width}}  {line}" for name, (line, _) in commands.items()]
    return "\n".join(
        [
            "usage: hifilight <command> [options]",
            "",
            "commands:",
            *lines,
            "",
            "Run `hifilight <command> --help` for the options of a command.",
        ]
    )


def _run(command: str, argv: list[str]) -> None:
    importlib.import_module(all_commands()[command][1]).run(argv)


# Third-party notices a hifilight user cannot act on: Lightning's advertisement tips and its notes about our own
# choices (the seed, the CSV logger), and a deprecation inside Lightning.
QUIET_WARNINGS = (r"No seed found", r".*tensorboardX.*", r".*LeafSpec.*", r".*local_dir_use_symlinks.*")
QUIET_LOG_PREFIXES = ("💡 Tip", "GPU available", "TPU available", "HPU available", "IPU available")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(QUIET_LOG_PREFIXES)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line (Python's default adds the source line that raised it, which then is the last thing a
    user reads): hifilight's own in its words, anyone else's with its category."""
    text = " ".join(str(message).split())
    if f"{os.sep}hifilight{os.sep}" in str(filename):
        return f"hifilight: warning: {text}\n"
    return f"warning ({category.__name__}): {text}\n"


def quiet_third_party() -> None:
    """No third-party progress bars ("Loading weights", read by transformers from this variable when it is first
    imported) or accelerator banners; hifilight prints one line per stage and its own progress bars."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.formatwarning = one_line_warning
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    from hifilight.errors import HifiError

    if argv[0] not in all_commands():
        print(f"hifilight: unknown command {argv[0]!r}; choose one of {', '.join(all_commands())}", file=sys.stderr)
        return 2
    try:
        _run(argv[0], argv[1:])
    except HifiError as err:
        print(f"hifilight {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hifilight: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
