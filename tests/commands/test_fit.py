"""`hifilight fit`: what it writes, what it refuses before training, checkpoints and resume."""

from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE_SUBJECT, fit_args

from hifilight.artifacts import SubjectArtifact
from hifilight.cli import main


def test_fit_writes_a_loadable_artifact(fitted):
    art = SubjectArtifact.load(fitted)
    assert art.c_s.shape == (5, 32) and art.class_name == "dog" and art.metadata["base_model"] == "tiny"
    assert art.metadata["training"]["global_step"] == 4 + 3 * 1 and art.metadata["resolution"] == 32
    assert art.c_s_t.shape == (3, 5, 32) and art.timesteps.tolist() == [667, 334, 1]
    assert not torch.equal(art.c_s, art.phi_s)  # trained


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


@pytest.mark.parametrize("method", ["hifi_ti", "textual_inversion", "dreambooth"])
def test_fit_help_names_its_method_and_how_to_see_the_others(method, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--method", method, "--help"])
    out = capsys.readouterr().out
    others = {"hifi_ti", "textual_inversion", "dreambooth"} - {method}
    assert f"those of --method {method};" in " ".join(out.split())
    assert all(f"hifilight fit --method {m} --help" in " ".join(out.split()) for m in others)
    assert out.splitlines()[0].startswith("usage: hifilight fit [--config FILE]")  # one line, not 600


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
