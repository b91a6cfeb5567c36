"""The typed fit entry: settings apply config < args < options, typed values reach the parser as typed."""

from pathlib import Path

import pytest

from hifilight.errors import HifiError
from hifilight.training import fit_cli

ROOT = Path(__file__).resolve().parents[2]


def _parsed(monkeypatch, **kwargs):
    """The module and data module `fit_cli.fit` would train, parsed from the arguments it builds (not run)."""
    from conftest import EXAMPLE_SUBJECT

    seen = []
    monkeypatch.setattr(fit_cli, "build_cli", lambda args, run=True: seen.append(args))
    fit_cli.fit("textual_inversion", EXAMPLE_SUBJECT, "dog", Path("unused.safetensors"), **kwargs)
    monkeypatch.undo()
    monkeypatch.chdir(ROOT)
    return fit_cli.build_cli(seen[0][1:], run=False)


def test_options_override_args_which_override_the_config(monkeypatch):
    config = ROOT / "configs" / "toyworld_ti.yaml"  # learning_rate 5e-3 there
    cli = _parsed(
        monkeypatch,
        config=config,
        args=["--model.learning_rate", "0.25", "--model.use_mask", "true"],
        options={"model.learning_rate": 0.5, "model.pretrained": "tiny", "data.caption_templates": ["a {}"]},
    )
    assert cli.model.hparams.learning_rate == 0.5 and cli.model.hparams.use_mask is True
    assert cli.datamodule.caption_templates == ["a {}"]  # a list travels as a list
    cli = _parsed(
        monkeypatch, config=config, args=["--model.learning_rate", "0.25"], options={"model.pretrained": "tiny"}
    )
    assert cli.model.hparams.learning_rate == 0.25


def test_flag_values_and_an_unknown_method():
    assert [fit_cli.flag_value(v) for v in (True, False, 3, 1e-3, ["a", "b"], (1, 2))] == [
        "true",
        "false",
        "3",
        "0.001",
        '["a", "b"]',
        "[1, 2]",
    ]
    with pytest.raises(HifiError, match="--method hifi: unknown; use one of hifi_ti, "):
        fit_cli.fit("hifi", "photos", "dog", "out.safetensors")
