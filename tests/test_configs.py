"""Every shipped config parses and instantiates with the command its first line names."""

from pathlib import Path

import pytest

from hifilight.commands import fit, predict, toyworld
from hifilight.commands.common import function_parser

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _command(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# hifilight "), f"{path.name}: first line must show the launch command"
    return first.split()[2]


def test_there_are_configs():
    assert {"hifi_ti.yaml", "demo.yaml", "predict.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path, tmp_path, monkeypatch):
    from conftest import EXAMPLE_SUBJECT

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    command = _command(path)
    if command == "fit":
        folder = fit.peek_method(["--config", str(path)]) == "dreambooth"  # DreamBooth writes a folder
        cli = fit.build_cli(
            [
                "--config",
                str(path),
                "--model.pretrained",
                "tiny",
                "--data.subject_dir",
                str(EXAMPLE_SUBJECT),
                "--data.class_name",
                "dog",
                "--trainer.accelerator",
                "cpu",
                "--out",
                str(tmp_path / ("s" if folder else "s.safetensors")),
            ],
            run=False,
        )
        assert cli.datamodule.class_name and cli.trainer.max_steps >= 1
        method = fit.peek_method(["--config", str(path)])
        assert type(cli.model).__name__ == fit.module_class(method).__name__
    elif command == "toyworld":
        sub = path.read_text().split()[3]  # "# hifilight toyworld <sub> ..."
        cfg = function_parser(toyworld.COMMANDS[sub], f"hifilight toyworld {sub}").parse_args(["--config", str(path)])
        assert cfg.seeds and cfg.fit_config.is_file() and cfg.ti_config.is_file()
        if sub == "tune":
            from hifilight.toyworld.ablation import table_rows_of
            from hifilight.toyworld.tuning import check_grid

            check_grid(cfg.grid, table_rows_of(cfg.method, None))
    else:
        assert command == "predict"
        cfg = predict.build_parser().parse_args(["--config", str(path), "--subject", "x.safetensors"])
        assert cfg.prompts and cfg.steps >= 1
        if cfg.reference_guidance:
            init = predict.build_parser().instantiate_classes(cfg)
            init.reference.guide.check(cfg.steps, cfg.guidance)
