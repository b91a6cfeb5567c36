"""bentofile.yaml: BentoML reads it, it pins what pyproject.toml pins, and `bentoml build` locks nothing (no uv)."""

import tomllib
from pathlib import Path

from bentoml._internal.bento.build_config import BentoBuildConfig

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return requirement.split("==")[0].split("[")[0].strip().lower()


def test_bentofile_pins_the_projects_versions_and_does_not_lock():
    with (ROOT / "bentofile.yaml").open() as f:
        config = BentoBuildConfig.from_yaml(f)
    assert config.service == "serve.service:HifiService"
    assert config.python.lock_packages is False  # no resolver run (network) at build time
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("uv==") for r in project["optional-dependencies"]["serve"])  # BentoML asks for uv
    pinned = {_name(r): r for r in project["dependencies"] if "==" in r}
    packages = {_name(r): r for r in config.python.packages}
    assert pinned.keys() <= packages.keys()
    assert all(packages[k] == v for k, v in pinned.items()), {k: (packages[k], v) for k, v in pinned.items()}
