"""The fit -> predict round trip on the tiny preset, and what a user gets for bad input."""

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE_SUBJECT, fit_args, sd_pipeline
from PIL import Image

from hifilight.artifacts import SubjectArtifact
from hifilight.cli import main


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from conftest import EXAMPLE_SUBJECT

    tmp = tmp_path_factory.mktemp("fit")
    out = tmp / "dog.safetensors"
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp / "logs")) == 0
    return out


def test_fit_writes_a_loadable_artifact(fitted):
    art = SubjectArtifact.load(fitted)
    assert art.c_s.shape == (5, 32) and art.class_name == "dog" and art.metadata["base_model"] == "tiny"
    assert art.metadata["training"]["global_step"] == 4 + 3 * 1 and art.metadata["resolution"] == 32
    assert art.c_s_t.shape == (3, 5, 32) and art.timesteps.tolist() == [667, 334, 1]
    assert not torch.equal(art.c_s, art.phi_s)  # trained


def test_predict_writes_images_grid_and_manifest(fitted, tmp_path):
    out = tmp_path / "pred"
    args = [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {} on the beach", "a dog in the snow"]',
        "--num_images",
        "2",
        "--steps",
        "3",
        "--out_dir",
        str(out),
    ]
    assert main(args) == 0
    manifest = json.loads((out / "predict.json").read_text())
    files = [item["file"] for item in manifest["images"]]
    assert len(files) == 4 and [i["seed"] for i in manifest["images"]] == [0, 1, 0, 1]
    assert manifest["images"][0]["text"] == "a dog on the beach"
    assert manifest["stepwise"] is True  # the artifact has c_s^t, so Eq. (7) is used by default
    for name in files:
        assert Image.open(out / name).size == (32, 32)
    assert Image.open(out / "grid.png").size == (64, 64)
    # same seed, same prompt -> same image; a second run refuses to overwrite, then overwrites when asked
    first = (out / files[0]).read_bytes()
    assert main(args) == 2
    assert main([*args, "--overwrite", "true"]) == 0
    assert (out / files[0]).read_bytes() == first


def test_existing_artifact_is_kept(tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"keep me")
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp_path)) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"


@pytest.mark.parametrize("case", ["under a file", "onto a folder"])
def test_unwritable_outputs_are_refused_before_training(case, tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    out, extra = {
        "under a file": (tmp_path / "file.txt" / "s.safetensors", []),
        "onto a folder": (tmp_path / "folder", ["--overwrite", "true"]),
    }[case]
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp_path / "logs", *extra)) == 2
    err = capsys.readouterr().err
    assert ("is a file, so nothing can be written" if case == "under a file" else "is a folder; pass a file") in err
    assert not (tmp_path / "logs").exists()  # refused before the trainer started


def test_a_result_that_cannot_be_written_at_the_end_is_saved_elsewhere(tmp_path, capsys, monkeypatch):
    from conftest import EXAMPLE_SUBJECT

    from hifilight.training import SubjectEmbeddingModule

    out = tmp_path / "s.safetensors"
    original = SubjectEmbeddingModule.save_outputs

    def flaky(self, datamodule, path, overwrite):  # the disk fills up just as the fit ends
        if path == out:
            raise OSError(28, "No space left on device")
        return original(self, datamodule, path, overwrite)

    monkeypatch.setattr(SubjectEmbeddingModule, "save_outputs", flaky)
    monkeypatch.chdir(tmp_path)
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp_path / "logs")) == 2
    err = capsys.readouterr().err
    rescued = tmp_path / "outputs" / "recovered" / "s.safetensors"
    assert f"the result was saved to {Path('outputs/recovered/s.safetensors')}" in err and "No space left" in err
    assert SubjectArtifact.load(rescued).c_s_t is not None


@pytest.mark.parametrize("case", ["missing", "url", "text", "pickle", "not lightning", "weights_only false"])
def test_bad_checkpoints_are_one_line_errors(case, tmp_path, capsys):
    import pickle

    from conftest import EXAMPLE_SUBJECT

    class Evil:  # a pickle that would run code: weights_only refuses it
        def __reduce__(self):
            return (print, ("pwned",))

    ckpt = tmp_path / "x.ckpt"
    if case == "text":
        ckpt.write_text("hello")
    elif case == "pickle":
        ckpt.write_bytes(pickle.dumps({"state_dict": Evil()}))
    elif case == "not lightning":
        torch.save({"weights": torch.zeros(2)}, ckpt)
    extra = {
        "missing": ["--ckpt_path", str(tmp_path / "nope.ckpt")],
        "url": ["--ckpt_path", "https://x/y.ckpt"],
        "weights_only false": ["--weights_only", "false"],
    }.get(case, ["--ckpt_path", str(ckpt)])
    assert main(fit_args(EXAMPLE_SUBJECT, tmp_path / "s.safetensors", tmp_path / "logs", *extra)) == 2
    captured = capsys.readouterr()
    expected = {
        "missing": "no such file",
        "url": "only local files",
        "text": "not a checkpoint hifilight can load",
        "pickle": "not a checkpoint hifilight can load",
        "not lightning": "not a Lightning checkpoint",
        "weights_only false": "would unpickle",
    }[case]
    errors = [line for line in captured.err.splitlines() if line.startswith("hifilight fit: error:")]
    assert len(errors) == 1 and expected in errors[0] and "pwned" not in captured.out


def test_an_own_checkpoint_passes_the_check_and_resumes(tmp_path):
    from conftest import EXAMPLE_SUBJECT

    assert main(fit_args(EXAMPLE_SUBJECT, tmp_path / "a.safetensors", tmp_path / "logs")) == 0
    (ckpt,) = (tmp_path / "logs").rglob("*.ckpt")
    args = fit_args(EXAMPLE_SUBJECT, tmp_path / "b.safetensors", tmp_path / "logs2", "--ckpt_path", str(ckpt))
    assert main(args) == 0  # the run had ended: the resumed fit writes the same embedding at once
    a, b = (SubjectArtifact.load(tmp_path / f"{n}.safetensors") for n in "ab")
    assert torch.equal(a.c_s, b.c_s) and torch.equal(a.c_s_t, b.c_s_t)


def test_artifact_from_another_base_model_is_refused(fitted, tmp_path, capsys):
    from hifilight.models.tiny import build_tiny

    sd_pipeline(**build_tiny(seed=7)).save_pretrained(tmp_path / "other")
    args = [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {}"]',
        "--steps",
        "2",
        "--model.pretrained",
        str(tmp_path / "other"),
        "--out_dir",
        str(tmp_path / "o"),
    ]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "text encoder differs" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "o").exists()


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


def test_attention_figure(fitted, tmp_path):
    out = tmp_path / "fig3.png"
    args = [
        "attention",
        "--subject",
        str(fitted),
        "--prompt",
        "a sitting {} dog",
        "--show_steps",
        "3,1",
        "--steps",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    width, height = Image.open(out).size
    assert width == 60 + 5 * 96 and height == 2 * 96 + 4 + 2 * 96  # image, then 2 steps x 5 token maps
    assert main(args) == 2  # no silent overwrite


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--show_steps", "0,4"], "each step must be in 1..3"),
        (["--show_steps", "a,b"], "separated by commas"),
        (
            ["--show_steps", "3,1", "--res", "16"],
            "--res 16: at 32 px this model's cross-attention maps are [2, 4] wide",
        ),
    ],
)
def test_attention_bad_steps(fitted, tmp_path, capsys, extra, message):
    args = [
        "attention",
        "--subject",
        str(fitted),
        "--prompt",
        "a {}",
        "--steps",
        "3",
        "--out",
        str(tmp_path / "a.png"),
    ]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_stepwise_stage_can_be_skipped(tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    out = tmp_path / "plain.safetensors"
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp_path, "--model.stepwise_steps=0")) == 0
    assert "step-wise stage skipped" in capsys.readouterr().err
    art = SubjectArtifact.load(out)
    assert art.c_s_t is None and art.metadata["training"]["global_step"] == 4
    args = ["predict", "--subject", str(out), "--prompts", '["a {}"]', "--steps", "2", "--stepwise", "true"]
    assert main([*args, "--out_dir", str(tmp_path / "p")]) == 2
    assert "no step-wise embeddings" in capsys.readouterr().err


def _reference_args(fitted, out, *extra):
    from conftest import EXAMPLE_SUBJECT

    return [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {} on the beach"]',
        "--num_images",
        "2",
        "--steps",
        "3",
        "--out_dir",
        str(out),
        "--reference_guidance",
        "true",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.masks",
        "grabcut",
        "--reference.dino_model",
        "tiny",
        "--reference.generated_masks",
        "none",
        "--reference.guide.start",
        "2",
        "--reference.guide.end",
        "1",
        "--reference.guide.inner_steps",
        "2",
        *extra,
    ]


def test_predict_with_reference_guidance(fitted, tmp_path, capsys):
    out = tmp_path / "ref"
    assert main(_reference_args(fitted, out, "--save_intermediates", "true")) == 0
    assert "reference caption: 'a photo of a dog'" in capsys.readouterr().err
    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["reference_guidance"]["guide"]["start"] == 2
    sources = {p.name for p in (Path(__file__).resolve().parents[1] / "hifilight/assets/example_subject").glob("*.jpg")}
    for item in manifest["images"]:
        stem = item["file"][:-4]
        assert item["skipped"] is None and item["reference"] in sources
        assert item["eq10_loss_after"] < item["eq10_loss_before"]
        assert set(item["alignment"]) == {"scale", "angle_deg", "tx", "ty", "loss", "iou"}
        assert item["seconds"]["guided"] > 0 and item["seconds"]["inversion"] > 0
        for kind in ("g1", "mask_g", "reference", "reference_aligned", "mask_r_aligned"):
            assert Image.open(out / f"{stem}_{kind}.png").size == (32, 32)
        assert (out / f"{stem}_g1.png").read_bytes() != (out / item["file"]).read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference.guide.start", "1", "--reference.guide.end", "2"], "need 1 <= end <= start <= --steps"),
        (["--reference.guide.start", "9"], "need 1 <= end <= start <= --steps (3)"),
        (["--guidance", "1"], "guidance 1 ignores"),
        (["--data.subject_dir", "/nowhere"], "no such folder"),
        (["--reference.generated_masks", "files"], "unknown provider for generated images"),
    ],
)
def test_reference_guidance_bad_input(fitted, tmp_path, capsys, extra, message):
    assert main(_reference_args(fitted, tmp_path / "o", *extra)) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and message in err[0] and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_predict_with_textual_inversion_and_dreambooth_subjects(tmp_path):
    from conftest import EXAMPLE_SUBJECT

    common = [
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "logs"),
        "--model.max_steps",
        "1",
    ]
    ti, db = tmp_path / "ti.safetensors", tmp_path / "db"
    assert main(["fit", "--method", "textual_inversion", *common, "--out", str(ti)]) == 0
    assert (
        main(
            [
                "fit",
                "--method",
                "dreambooth",
                *common,
                "--model.num_class_images",
                "1",
                "--model.class_steps",
                "2",
                "--out",
                str(db),
            ]
        )
        == 0
    )
    for subject, word in ((ti, "<sks> dog"), (db, "sks dog")):
        out = tmp_path / f"pred_{subject.stem}"
        args = [
            "predict",
            "--subject",
            str(subject),
            "--prompts",
            '["a {} on the beach"]',
            "--steps",
            "2",
            "--out_dir",
            str(out),
        ]
        assert main(args) == 0
        manifest = json.loads((out / "predict.json").read_text())
        assert manifest["images"][0]["text"] == f"a {word} on the beach" and manifest["stepwise"] is False
        assert Image.open(out / manifest["images"][0]["file"]).size == (32, 32)
    # reference guidance on DreamBooth: the conditioning simply has no c_s
    out = tmp_path / "db_ref"
    assert main(_reference_args(db, out, "--steps", "3")) == 0
    item = json.loads((out / "predict.json").read_text())["images"][0]
    assert item["skipped"] is None and item["eq10_loss_after"] < item["eq10_loss_before"]
    assert main(["predict", "--subject", str(ti), "--prompts", '["a {}"]', "--stepwise", "true"]) == 2


def test_ddp_strategy_allows_the_idle_embedding(tmp_path):
    from conftest import EXAMPLE_SUBJECT

    from hifilight.commands.fit import build_cli

    out = tmp_path / "s.safetensors"
    args = [
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "1",
        "--out",
        str(out),
    ]
    cli = build_cli(args, run=False)
    assert cli.trainer.strategy._ddp_kwargs["find_unused_parameters"] is True


def test_predict_into_a_file_is_refused_before_generating(fitted, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    args = ["predict", "--subject", str(fitted), "--prompts", '["a {}"]', "--out_dir", str(tmp_path / "taken")]
    assert main(args) == 2
    assert "taken is a file, so nothing can be written there" in capsys.readouterr().err


def test_masks_write_nothing_when_one_photo_fails_and_rerun_after_the_fix(tmp_path, capsys):
    from conftest import EXAMPLE_SUBJECT

    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:2]
    for p in good:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "zz.jpg").write_bytes(good[0].read_bytes()[:2000])  # truncated: fails after the good ones
    out = tmp_path / "masks"
    args = ["masks", "--data.subject_dir", str(photos), "--masks", "grabcut", "--out", str(out)]
    assert main(args) == 2 and "zz.jpg: unreadable or truncated" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # no partial set to block the rerun
    (photos / "zz.jpg").unlink()
    assert main(args) == 0 and len(list(out.glob("*.png"))) == 3  # two masks and overlay.png


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


@pytest.mark.parametrize("method", ["hifi_ti", "textual_inversion", "dreambooth"])
def test_fit_help_names_its_method_and_how_to_see_the_others(method, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--method", method, "--help"])
    out = capsys.readouterr().out
    others = {"hifi_ti", "textual_inversion", "dreambooth"} - {method}
    assert f"those of --method {method};" in " ".join(out.split())
    assert all(f"hifilight fit --method {m} --help" in " ".join(out.split()) for m in others)
    assert out.splitlines()[0].startswith("usage: hifilight fit [--config FILE]")  # one line, not 600


def test_cross_attention_sizes_match_what_the_unet_records(tiny):
    from hifilight.sampling.attention import AttentionStore, attention_control, cross_attention_sizes

    store = AttentionStore({0}, [1])
    latents = torch.zeros(1, 4, 8, 8)
    with attention_control(tiny.unet, store), torch.no_grad():
        store.step = 0
        tiny.unet(latents, torch.tensor([10]), encoder_hidden_states=torch.zeros(1, 77, 32))
    assert cross_attention_sizes(tiny.unet.config, 8) == sorted(store.sizes)


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


def test_toyworld_train_dispatches_to_the_trainers_and_names_them(capsys):
    assert main(["toyworld", "train", "nope"]) == 2
    assert "train nope: unknown trainer; choose one of toysd, toysd2, models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:  # the trainer's own parser, under the hifilight name
        main(["toyworld", "train", "toysd", "--latent_scale", "0"])
    assert exit.value.code == 2 and "hifilight toyworld train toysd: error: --latent_scale" in capsys.readouterr().err


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


def test_a_base_model_from_a_subject_header_is_named_as_such_not_as_a_flag(tiny, tmp_path, capsys):
    from conftest import make_artifact

    art = make_artifact(tiny)
    art.metadata = {**art.metadata, "base_model": "/etc/passwd"}  # a crafted header
    art.save(tmp_path / "crafted.safetensors")
    args = ["predict", "--subject", str(tmp_path / "crafted.safetensors"), "--prompts", '["a {}"]']
    assert main([*args, "--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "its header's base_model /etc/passwd" in err and "--model.pretrained /etc/passwd" not in err, err


def test_a_huge_prompt_is_not_repeated_in_its_error_line(fitted, tmp_path, capsys):
    prompt = "x " * 5000  # 10 000 characters, no placeholder and no class word
    args = ["predict", "--subject", str(fitted), "--prompts", json.dumps([prompt]), "--out_dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "(10000 characters)" in err and len(err) < 400, err


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


@pytest.mark.parametrize(
    ("method", "out", "says"),
    [
        ("lora", "lora", "a lora subject is one .safetensors file; pass --out {out}.safetensors"),
        ("textual_inversion", "ti.bin", "pass --out {out}.safetensors"),
        ("dreambooth", "db.safetensors", "DreamBooth writes a diffusers folder"),
    ],
)
def test_fit_outputs_get_the_extension_their_format_needs(method, out, says, tmp_path, capsys):
    target = str(tmp_path / out)
    args = ["fit", "--method", method, "--data.subject_dir", str(EXAMPLE_SUBJECT), "--data.class_name", "dog"]
    assert main([*args, "--out", target]) == 2
    assert says.format(out=target) in capsys.readouterr().err
    assert not Path(target).exists()


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
