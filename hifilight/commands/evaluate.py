"""`hifilight evaluate`: the DreamBench protocol (hifilight.evaluation.dreambench_protocol).

hifilight evaluate --dataset dreambench/ --method table2 --images_per_prompt 4 --out eval/
"""

from __future__ import annotations

from hifilight.commands.common import function_parser, run_function
from hifilight.evaluation.dreambench_protocol import evaluate


def build_parser():
    return function_parser(evaluate, "hifilight evaluate")


def run(argv: list[str]) -> None:
    run_function(evaluate, "hifilight evaluate", argv)
