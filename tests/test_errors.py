"""One-line parse errors: jsonargparse messages (nested, Union, Literal) as flag, value and what it takes."""

import pytest

from hifilight.cli import main
from hifilight.errors import HifiError, check_numbers, one_line_parse_error

NESTED_LITERAL = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'hifilight.options.ModelOptions'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'hifilight.options.ModelOptions':
        Parser key "dtype":
          Expected a typing.Literal['float32', 'float16', 'bfloat16']. Got value: float64
    - Expected a <class 'NoneType'>
  Given value type: <class 'jsonargparse._util.NestedArg'>
  Given value: NestedArg(key='dtype', val='float64')"""
UNION_LIST = """Parser key "seeds":
  Does not validate against any of the Union subtypes
  Subtypes: [list[int], <class 'NoneType'>]
  Errors:
    - Expected a <class 'list'>
    - Expected a <class 'NoneType'>
  Given value type: <class 'str'>
  Given value: x"""


@pytest.mark.parametrize(
    "message, line",
    [
        (NESTED_LITERAL, "--model.dtype float64: use one of float32, float16, bfloat16 (see `p --help`)"),
        ("Parser key \"steps\":\n  Expected a <class 'int'>. Got value: abc", "--steps abc: use a value of type int"),
        (UNION_LIST, "--seeds x: use list[int] (see `p --help`)"),
        ("the following arguments are required: subject, prompts", "missing --subject, --prompts (see `p --help`)"),
        ("unrecognized arguments: --bogus 1", "unrecognized arguments: --bogus 1 (see `p --help`)"),
    ],
)
def test_parse_errors_become_one_line_naming_flag_value_and_choices(message, line):
    out = one_line_parse_error(message, "p")
    assert out.startswith(line) and "\n" not in out


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["predict", "--subject", "x.safetensors", "--prompts", '["a"]', "--model.dtype", "float64"],
            "hifilight predict: error: --model.dtype float64: use one of float32, float16, bfloat16",
        ),
        (
            ["evaluate", "--dataset", "d", "--out", "o", "--metrics.pairing", "best"],
            "hifilight evaluate: error: --metrics.pairing best: use one of all, one_to_one",
        ),
        (
            ["evaluate", "--dataset", "d", "--out", "o", "--metrics.clip_t_text", "word"],
            "hifilight evaluate: error: --metrics.clip_t_text word: use one of class, identifier",
        ),
        (["fit", "--model.learning_rate", "fast"], "hifilight fit: error: --model.learning_rate fast: use a value"),
        (["toyworld", "ablation", "--seeds", "[a]"], "hifilight toyworld: error: --seeds a: use a value of type int"),
        (
            ["fit", "--model.pretrained", "tiny"],
            "hifilight fit: error: missing --data.subject_dir, --data.class_name (see `hifilight fit --help`)",
        ),
    ],
)
def test_a_bad_typed_value_is_one_line_with_exit_2(args, line, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "checks, message",
    [
        ([("--a", 0.0, "> 0")], "--a must be > 0, got 0.0"),
        ([("--a", 1, "> 0"), ("--b", -1, ">= 0"), ("--c", 0, ">= 1")], "--b must be >= 0, got -1"),
        ([("--p", 1.0, "in [0, 1)")], "--p must be in [0, 1), got 1.0"),
    ],
)
def test_check_numbers_names_the_first_bad_flag_and_its_value(checks, message):
    with pytest.raises(HifiError) as err:
        check_numbers(*checks)
    assert str(err.value) == message


def test_check_numbers_passes_good_and_unset_values():
    check_numbers(("--a", 1e-6, "> 0"), ("--b", 0, ">= 0"), ("--c", None, "> 0"), ("--p", 0.0, "in [0, 1)"))


@pytest.mark.parametrize(
    "method, flag, value",
    [
        ("textual_inversion", "--model.max_steps", "0"),
        ("dreambooth", "--model.num_class_images", "0"),
        ("dreambooth", "--model.prior_loss_weight", "-1"),
        ("hifi_ti", "--model.stepwise_num_steps", "0"),
    ],
)
def test_each_bad_fit_number_is_its_own_message(method, flag, value, tmp_path, capsys):
    args = [
        "fit",
        "--method",
        method,
        "--model.pretrained",
        "tiny",
        flag,
        value,
        "--out",
        str(tmp_path / ("o" if method == "dreambooth" else "o.safetensors")),
        "--data.subject_dir",
        str(tmp_path),
        "--data.class_name",
        "dog",
    ]
    assert main(args) == 2
    assert f"error: {flag} must be " in capsys.readouterr().err
