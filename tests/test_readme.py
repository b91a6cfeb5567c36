"""Every `hifilight` command in the README's bash blocks runs as written on the embedded tiny model: the model id
and the user's paths are swapped for tiny / the example subject / a temporary folder, and flags are appended that
only shorten the run (fewer steps, one image); nothing in the command itself is changed or dropped."""

import re
import shlex
from pathlib import Path

from conftest import EXAMPLE_SUBJECT

from hifilight.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTER = {  # appended after the README's own flags: later values win
    "fit": ["--model.stage1_steps", "2", "--model.stepwise_steps", "1", "--model.stepwise_num_steps", "2",
            "--data.resolution", "64", "--trainer.enable_progress_bar", "false"],
    "predict": ["--steps", "2", "--num_images", "1"],
    "attention": ["--steps", "4", "--resolution", "128"],  # 128 px: the tiny UNet has 16 x 16 maps (--res 16)
}  # fmt: skip


def readme_commands() -> list[list[str]]:
    """The `hifilight ...` commands of the README's bash blocks, continuations joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("hifilight ")]


def test_every_readme_command_runs_on_the_embedded_model(tmp_path, monkeypatch):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["fit", "predict", "attention", "export", "export"]
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the README's configs/ paths are relative to the repo
    swap = {"CompVis/stable-diffusion-v1-4": "tiny", "photos/": str(EXAMPLE_SUBJECT), "dog_db/": "tiny"}
    for args in commands:
        args = [
            swap.get(a, str(tmp_path / a) if a.endswith((".safetensors", ".png", "out/", "onnx/")) else a) for a in args
        ]
        if args[0] == "attention":  # the README's step list at the shortened length
            args[args.index("--show_steps") + 1] = "4,3,2,1"
        assert main([*args, *SHORTER.get(args[0], [])]) == 0, args
    assert all((tmp_path / f).is_file() for f in ("dog.safetensors", "fig3.png", "dog_db.safetensors"))
    assert (tmp_path / "onnx" / "model_index.json").is_file()
    assert len(list((tmp_path / "out").glob("*.png"))) == 3  # two prompts x one image, and grid.png
