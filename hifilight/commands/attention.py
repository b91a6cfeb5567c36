"""`hifilight attention`: cross-attention maps of the subject tokens across sampling steps (paper Figure 3).

hifilight attention --subject dog.safetensors --prompt "a sitting {} dog" --show_steps 50,40,25,1 --out fig3.png
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser

from hifilight.artifacts import SubjectArtifact
from hifilight.commands.common import function_parser, note_random_weights, run_function
from hifilight.errors import HifiError
from hifilight.io import check_writable, save_png
from hifilight.models import load_components
from hifilight.options import ModelOptions, resolve_device
from hifilight.sampling.attention import AttentionStep, AttentionStore, attention_control, cross_attention_sizes
from hifilight.sampling.generate import make_jobs
from hifilight.sampling.renderer import SubjectRenderer
from hifilight.subjects import Subject
from hifilight.viz import attention_figure


def parse_steps(show_steps: str, steps: int) -> list[int]:
    """'50,40,25,1' -> [50, 40, 25, 1]; step s counts down like the paper's figure (steps = first, 1 = last)."""
    try:
        values = [int(s) for s in str(show_steps).replace(" ", "").split(",") if s]
    except ValueError as err:
        raise HifiError(
            f"--show_steps {show_steps!r}: write step numbers separated by commas, e.g. 50,40,25,1"
        ) from err
    bad = [s for s in values if not 1 <= s <= steps]
    if not values or bad:
        raise HifiError(f"--show_steps {show_steps}: each step must be in 1..{steps} (--steps); got {bad or 'none'}")
    return values


def attention(
    subject: Path,
    prompt: str,
    show_steps: str = "50,40,25,1",
    out: Path = Path("outputs/attention.png"),
    model: ModelOptions | None = None,
    seed: int = 0,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int | None = None,
    res: int | None = None,
    stepwise: bool | None = None,
    overwrite: bool = False,
) -> None:
    """Render a generated image and the cross-attention maps of each subject token at chosen steps (Figure 3).

    Args:
        subject: subject artifact (.safetensors) written by `hifilight fit`.
        prompt: the prompt; {} or <subject> marks the subject, e.g. "a sitting {} dog".
        show_steps: the steps to show, comma-separated; --steps is the first (noisiest) step and 1 the last.
        out: the PNG to write.
        model: base model options (default: the artifact's base model).
        seed: seed of x_T.
        steps: DDIM steps of the generation (paper: 50), as in every command.
        guidance: classifier-free guidance weight.
        resolution: image size in pixels (default: the training resolution).
        res: average only the layers whose attention map is res x res (e.g. 16 for SD at 512 px); default: all
            cross-attention layers, resized to the largest map.
        stepwise: use the step-wise embeddings (Eq. 7); default: when the artifact has them.
        overwrite: replace `out` if it exists.
    """
    model = model or ModelOptions()
    wanted = parse_steps(show_steps, steps)
    check_writable(out, overwrite, "--overwrite")
    artifact = SubjectArtifact.load(subject)
    jobs = make_jobs([prompt], artifact.class_name, seed, 1)
    pretrained = model.pretrained or artifact.metadata.get("base_model", "tiny")
    note_random_weights(pretrained)
    comps = load_components(pretrained, model.dtype, resolve_device(model.device))
    size = resolution or artifact.metadata.get("resolution", 512)
    sizes = cross_attention_sizes(comps.unet.config, size // comps.vae_scale_factor)
    if res is not None and res not in sizes:  # before sampling, not after all the steps
        raise HifiError(
            f"--res {res}: at {size} px this model's cross-attention maps are {sizes} wide; pass one of "
            "them or leave --res out (all layers)"
        )
    n, length = artifact.num_tokens, comps.tokenizer.model_max_length
    store = AttentionStore({steps - s for s in wanted}, list(range(length - n, length)), res)
    with attention_control(comps.unet, store):
        renderer = SubjectRenderer(comps).set_subject(Subject.of_artifact(artifact), stepwise)
        image = renderer.render(jobs, steps, guidance, size, 1, callbacks=[AttentionStep(store)])[0].image
    try:
        maps = store.maps()
    except ValueError as err:
        raise HifiError(f"--res {res}: {err}") from err
    rows = {f"step {s}": maps[steps - s][0] for s in wanted}
    save_png(attention_figure(image, rows), out, overwrite)
    print(f"wrote {out} ({len(wanted)} steps x {n} subject tokens)")


def build_parser() -> ArgumentParser:
    return function_parser(attention, "hifilight attention")


def run(argv: list[str]) -> None:
    run_function(attention, "hifilight attention", argv)
