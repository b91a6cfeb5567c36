"""User-facing errors: one line that names the problem and the fix; the CLI prints them without a traceback."""


class HifiError(Exception):
    """An error caused by user input (paths, flags, files). The message must say how to fix it."""
