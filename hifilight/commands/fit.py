"""`hifilight fit`: learn a subject (LightningCLI; see hifilight.training.fit_cli).

hifilight fit --config configs/hifi_ti.yaml --data.subject_dir photos/ --data.class_name dog --out dog.safetensors
"""

from __future__ import annotations

from hifilight.training.fit_cli import build_cli, module_class, peek_method

__all__ = ["build_cli", "module_class", "peek_method", "run"]


def run(argv: list[str]) -> None:
    build_cli(["fit", *argv])
