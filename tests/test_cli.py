"""What every command shares: help, one-line errors for bad and damaged input, flags that exist, the command
table, list options, a quiet console."""

import ast
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_SUBJECT, fit_args

from hifilight.artifacts import SubjectArtifact
from hifilight.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--data.subject_dir", "/nonexistent", "--data.class_name", "dog"], "no such folder"),
        (["fit", "--data.subject_dir", "{empty}", "--data.class_name", "dog"], "no images found"),
        (
            [
                "fit",
                "--data.subject_dir",
                "{example}",
                "--data.class_name",
                "dog",
                "--model.pretrained",
                "./nowhere",
            ],
            "no such folder and not a hub id",
        ),
        (
            ["fit", "--data.subject_dir", "{broken}", "--data.class_name", "dog", "--model.stage1_steps", "1"],
            "00.jpg: unreadable or truncated",
        ),
        (["predict", "--subject", "/nope.safetensors", "--prompts", '["a {}"]'], "no such file"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a beach"]'], "no subject placeholder"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--resolution", "100000"], "--resolution must"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--resolution", "-64"], "--resolution must"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--resolution", "60"], "a multiple of 8"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--seed", "99999999999999999999"], "--seed"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--steps", "100000"], "--steps must"),
        (["predict", "--subject", "{fitted}", "--prompts", '["a {}"]', "--guidance", "1000"], "--guidance must"),
        (["evaluate", "--dataset", "{empty}", "--images_per_prompt", "0"], "--images_per_prompt must be in 1.."),
        (["toyworld", "calibrate", "--images_per_prompt", "-1"], "--images_per_prompt must be in 1.."),
        (["toyworld", "ablation", "--seeds", "[0, -3]"], "--seeds must be in 0.."),
        (["toyworld", "dataset", "--size", "20000"], "--size must be in 16..4096"),
        (
            [
                "fit",
                "--data.subject_dir",
                "{example}",
                "--data.class_name",
                "dog",
                "--model.stage1_steps",
                "0",
                "--model.stepwise_steps",
                "0",
            ],
            "nothing would be trained",
        ),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, message, fitted, tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "00.jpg").write_bytes((EXAMPLE_SUBJECT / "00.jpg").read_bytes()[:3000])
    subs = {
        "{empty}": str(tmp_path / "empty"),
        "{example}": str(EXAMPLE_SUBJECT),
        "{fitted}": str(fitted),
        "{broken}": str(tmp_path / "broken"),
    }
    assert main([subs.get(a, a) for a in args]) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and message in err[0] and "Traceback" not in stderr


def test_console_script_reports_errors_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("hifilight")
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(exe), "fit", "--data.subject_dir", str(tmp_path), "--data.class_name", "dog"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no images found" in proc.stderr and "Traceback" not in proc.stderr


HELP = [
    *([c, "--help"] for c in ("fit", "predict", "attention", "masks", "invert", "replace", "evaluate", "export")),
    *(["toyworld", c, "--help"] for c in ("dataset", "ablation", "calibrate", "tune", "snapshot")),
    ["--help"],
    ["export", "onnx", "--help"],
    ["export", "checkpoint", "--help"],
    ["export", "lora", "--help"],
    ["toyworld", "--help"],
    ["toyworld", "snapshot", "--help"],
    ["toyworld", "train", "--help"],
    ["toyworld", "train", "toysd", "--help"],
    ["toyworld", "train", "models", "--help"],
]


@pytest.mark.parametrize("args", HELP, ids=" ".join)
def test_every_command_has_help_that_exits_0(args, capsys):
    try:
        code = main(args)
    except SystemExit as exit:  # the typed parsers print help and exit
        code = exit.code
    assert code in (0, None) and "usage" in capsys.readouterr().out.lower()


DAMAGED = {  # every command, fed a damaged input: one line naming it, exit 2, no traceback
    "predict": (["predict", "--subject", "{bad}", "--prompts", '["a {}"]'], "tensor 'c_s' holds NaN"),
    "attention": (["attention", "--subject", "{bad}", "--prompt", "a {}", "--out", "{tmp}/a.png"], "holds NaN"),
    "replace": (
        [
            "replace",
            "--image",
            "{photo}",
            "--subject",
            "{bad}",
            "--source_word",
            "dog",
            "--caption",
            "a dog",
            "--out",
            "{tmp}/r",
        ],
        "holds NaN",
    ),
    "invert": (["invert", "--image", "{broken}", "--caption", "a dog", "--out", "{tmp}/i"], "unreadable or truncated"),
    "masks": (["masks", "--data.subject_dir", "{broken_dir}", "--out", "{tmp}/m"], "unreadable or truncated"),
    "export": (["export", "onnx", "--model.pretrained", "{tmp}/nowhere", "--out", "{tmp}/o"], "no such folder"),
    "evaluate": (["evaluate", "--dataset", "{tmp}/nowhere"], "nowhere"),
    "toyworld": (["toyworld", "calibrate", "--split", "train"], "--split must be one of"),
    "fit": (["fit", "--data.subject_dir", "{broken_dir}", "--data.class_name", "dog"], "unreadable or truncated"),
}


@pytest.mark.parametrize("command", DAMAGED)
def test_every_command_answers_a_damaged_input_in_one_line(command, fitted, tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    art = SubjectArtifact.load(fitted)
    art.c_s = art.c_s * float("nan")
    art.save(tmp_path / "bad.safetensors")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "00.jpg").write_bytes((EXAMPLE_SUBJECT / "00.jpg").read_bytes()[:3000])
    subs = {
        "{bad}": str(tmp_path / "bad.safetensors"),
        "{photo}": str(EXAMPLE_SUBJECT / "00.jpg"),
        "{broken}": str(tmp_path / "b" / "00.jpg"),
        "{broken_dir}": str(tmp_path / "b"),
    }
    args, message = DAMAGED[command]
    args = [subs.get(a, a).replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"hifilight {command}: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["masks", "--data.subject_dir", "{example}", "--masks", "bogus", "--out", "{tmp}/m"], "--masks bogus"),
        (["evaluate", "--dataset", "{toy}", "--metrics.dino_model", "{tmp}/nowhere"], "--metrics.dino_model"),
        (
            [
                "predict",
                "--subject",
                "{fitted}",
                "--prompts",
                '["a {}"]',
                "--reference_guidance",
                "true",
                "--data.subject_dir",
                "{example}",
                "--reference.dino_model",
                "{tmp}/nowhere",
                "--steps",
                "3",
                "--reference.guide.start",
                "2",
                "--reference.guide.end",
                "1",
                "--out_dir",
                "{tmp}/p",
            ],
            "--reference.dino_model",
        ),
    ],
)
def test_messages_name_the_flag_of_the_command_that_was_run(args, flag, fitted, tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    from hifilight.toyworld.dataset import write_dataset

    write_dataset(tmp_path / "toy", ["blue_star_yellow_dots"], 1, 64)
    subs = {"{example}": str(EXAMPLE_SUBJECT), "{fitted}": str(fitted), "{toy}": str(tmp_path / "toy")}
    assert main([subs.get(a, a).replace("{tmp}", str(tmp_path)) for a in args]) == 2
    assert f"error: {flag}" in capsys.readouterr().err


FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)")
EXTERNAL_FLAGS = {"host", "port"}  # `bentoml serve`'s own, in the command line serving.py runs
ALL_HELP = [
    *(["fit", "--method", m, "--help"] for m in ("hifi_ti", "textual_inversion", "dreambooth", "lora")),
    *([c, "--help"] for c in ("predict", "attention", "masks", "invert", "replace", "evaluate")),
    *(["toyworld", c, "--help"] for c in ("dataset", "ablation", "calibrate", "tune", "snapshot")),
    *(["export", c, "--help"] for c in ("onnx", "checkpoint", "lora")),
]


def _help_flags(args: list[str], capsys, seen: set[str] | None = None) -> set[str]:
    """Every flag a command's --help shows, with the nested groups' (--metrics.help, --reference.guide.help)."""
    seen = set() if seen is None else seen
    with contextlib.suppress(SystemExit):
        main(args)
    found = set(FLAG.findall(capsys.readouterr().out))
    for group in sorted(f for f in found if f.endswith(".help") and f not in seen):
        seen.add(group)
        found |= _help_flags([*args[:-1], f"--{group}"], capsys, seen)
    return found


def _script_flags(tree) -> set[str]:
    """The flags a module's own trainer defines (ToySD's and the ToyWorld models' argparse scripts; ToySD v2's typed
    `TrainArgs`, one flag per field)."""
    argparse_flags = {
        a.value[2:]
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "add_argument"
        for a in n.args[:1]
        if isinstance(a, ast.Constant)
    }
    fields = {
        f.target.id
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and n.name.endswith("Args")
        for f in n.body
        if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
    }
    return argparse_flags | fields


def test_every_flag_a_message_names_is_a_real_flag(capsys):
    """A message that says "pass --x" must name an option some command has (docstrings may cite other tools)."""
    known = set().union(*(_help_flags(a, capsys) for a in ALL_HELP)) | EXTERNAL_FLAGS
    package = Path(__file__).resolve().parents[1] / "hifilight"
    wrong = {}
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)
        }
        local = _script_flags(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                bad = {f for f in FLAG.findall(node.value) if f not in known | local}
                if bad:
                    wrong.setdefault(str(path.relative_to(package)), set()).update(bad)
    assert not wrong, wrong


def test_one_command_table_drives_help_dispatch_and_the_readme(capsys):
    import importlib

    from hifilight.cli import COMMANDS, all_commands

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, (_, module) in all_commands().items():
        assert callable(importlib.import_module(module).run)
        assert re.search(rf"^  {name} +\S", out, re.M) and f"`{name}" in readme
    modules = {p.stem for p in (Path(__file__).parents[1] / "hifilight" / "commands").glob("*.py")}
    assert modules - {"__init__", "common"} == set(all_commands())  # every command module is reachable
    assert "toyworld" not in COMMANDS and "toyworld" in all_commands()  # the plugin registers its own command


def test_list_options_take_the_comma_form_users_type(tmp_path):
    from hifilight.commands.common import comma_lists
    from hifilight.commands.predict import predict
    from hifilight.evaluation.dreambench_protocol import evaluate

    assert comma_lists(evaluate, ["--subjects", "can,dog6", "--prompts=0, 2"]) == [
        "--subjects",
        '["can", "dog6"]',
        "--prompts=[0, 2]",
    ]
    assert comma_lists(evaluate, ["--subjects", '["can"]']) == ["--subjects", '["can"]']  # JSON stays as it is
    assert comma_lists(predict, ["--prompts", "a {}, running"]) == ["--prompts", '["a {}, running"]']  # one prompt
    out = tmp_path / "toy"
    args = ["toyworld", "dataset", "--out", str(out), "--subjects", "blue_star_yellow_dots,red_heart_white_stripes"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["blue_star_yellow_dots", "red_heart_white_stripes"]


def test_the_console_shows_no_third_party_bars_or_accelerator_banners(tmp_path):
    """A fit (Lightning) and a command loading ToySD from its folder (transformers' "Loading weights" bars)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [
        fit_args(EXAMPLE_SUBJECT, str(tmp_path / "a.safetensors"), str(tmp_path / "logs")),
        ["toyworld", "calibrate", "--split", "val", "--prompts", "[0]", "--images_per_prompt", "1", "--steps", "2"],
    ]
    for args in runs:
        run = subprocess.run([sys.executable, "-m", "hifilight.cli", *args], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        text = run.stdout + run.stderr
        for noise in ("Loading weights", "GPU available", "TPU available", "Writing model shards"):
            assert noise not in text, (noise, text[-2000:])
