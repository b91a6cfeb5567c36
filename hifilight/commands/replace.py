"""`hifilight replace`: put a learned subject into a real photo (Algorithm 3).

    hifilight replace --image cat.jpg --subject dog.safetensors --source_word cat \
        --caption "a photo of a sitting cat" --out out/
"""

from __future__ import annotations

from pathlib import Path

import torch

from hifilight.artifacts import SubjectArtifact
from hifilight.commands.common import function_parser, note_random_weights, run_function
from hifilight.conditioning import check_room, encode_text
from hifilight.data.images import load_rgb, square_photo, to_pil, to_tensor
from hifilight.errors import HifiError
from hifilight.io import check_writable, image_grid, save_png
from hifilight.models import load_components
from hifilight.options import ModelOptions, resolve_device
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.attention import AttentionStep, attention_control
from hifilight.sampling.ddim import decode_latents, encode_images
from hifilight.sampling.generate import prepare_subject
from hifilight.sampling.inversion import ddim_invert
from hifilight.sampling.null_text import NullTextSettings, PerStepUncond, null_text_inversion
from hifilight.sampling.replace import InjectCrossAttention, ReplacementConditioning, column_map, replace_word

OUTPUTS = ("edited.png", "side_by_side.png")


def caption_for(image, caption: str | None, captioner: str, device: str) -> str:
    if caption:
        return caption
    from hifilight.perception.captioner import Blip2Captioner

    text = Blip2Captioner.from_pretrained(captioner, device).caption([image])[0]
    if not text:
        raise HifiError("the captioner returned an empty caption; pass --caption")
    print(f"caption: {text}")
    return text


def replace(
    image: Path,
    subject: Path,
    source_word: str,
    caption: str | None = None,
    out: Path = Path("outputs/replace"),
    model: ModelOptions | None = None,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int | None = None,
    inject_fraction: float = 1.0,
    inject_layers: str | None = None,
    captioner: str = "Salesforce/blip2-opt-2.7b",
    null_text: NullTextSettings | None = None,
    overwrite: bool = False,
) -> None:
    """Replace the subject of a photo by a learned subject (Algorithm 3: null-text inversion + attention injection).

    Args:
        image: the photo.
        subject: subject artifact (.safetensors) from `hifilight fit`.
        source_word: the word of the caption that names what to replace, e.g. cat.
        caption: the photo's caption c^r; default: BLIP-2 (--captioner).
        out: folder for edited.png and side_by_side.png (photo | reconstruction | edit).
        model: base model options (default: the artifact's base model).
        steps: DDIM steps (paper: 50).
        guidance: classifier-free guidance weight.
        resolution: working size (default: the subject's training resolution).
        inject_fraction: share of the steps, from the first, whose cross-attention maps are injected (paper: all, 1.0).
        inject_layers: regex on module paths of the layers to inject (e.g. "up_blocks"); default: all (paper).
        captioner: BLIP-2 hub id or folder, used when --caption is not given.
        null_text: null-text optimisation schedule.
        overwrite: replace existing outputs.
    """
    model, settings = model or ModelOptions(), null_text or NullTextSettings()
    if not 0.0 <= inject_fraction <= 1.0:
        raise HifiError(f"--inject_fraction must be in [0, 1], got {inject_fraction}")
    for name in OUTPUTS:
        check_writable(Path(out) / name, overwrite, "--overwrite")
    if not Path(image).is_file():
        raise HifiError(f"--image {image}: no such file")
    artifact = SubjectArtifact.load(subject)
    pretrained = model.pretrained or artifact.metadata.get("base_model", "tiny")
    note_random_weights(pretrained)
    device = resolve_device(model.device)
    comps = load_components(pretrained, model.dtype, device)
    size = resolution or artifact.metadata.get("resolution", 512)
    photo = square_photo(load_rgb(Path(image)), size)
    c_r_text = caption_for(photo, caption, captioner, device)
    c_g_text = replace_word(c_r_text, source_word, artifact.class_name)
    check_room(comps.tokenizer, c_g_text, artifact.num_tokens)
    phi = prepare_subject(comps, artifact)
    engine = SamplingEngine(comps.unet, DDIMSchedule.from_scheduler(comps.scheduler, steps))
    c_r = encode_text(comps.tokenizer, comps.text_encoder, [c_r_text]).float()
    c_g = encode_text(comps.tokenizer, comps.text_encoder, [c_g_text]).float()
    x0 = encode_images(comps.vae, to_tensor(photo)[None].to(comps.unet.device)).float()
    trajectory = ddim_invert(engine, x0, c_r)
    phis = null_text_inversion(engine, trajectory, c_r, phi, guidance, settings).phis
    mapping = column_map(comps.tokenizer, c_r_text, source_word, artifact.class_name, artifact.num_tokens)
    controller = InjectCrossAttention(mapping, set(range(round(inject_fraction * steps))), inject_layers)
    callbacks = [
        ReplacementConditioning(c_r, c_g, artifact.c_s, artifact.c_s_t, artifact.timesteps),
        PerStepUncond(phis),
        AttentionStep(controller),
    ]
    with attention_control(comps.unet, controller):
        x = engine.sample(trajectory[-1].expand(2, -1, -1, -1), torch.cat([c_r, c_r]), phi, guidance, callbacks)
    replay, edited = (to_pil(img) for img in decode_latents(comps.vae, x).cpu())
    save_png(edited, Path(out) / OUTPUTS[0], overwrite)
    save_png(image_grid([photo, replay, edited], cols=3), Path(out) / OUTPUTS[1], overwrite)
    print(f"{c_r_text!r} -> {c_g_text!r} + subject; wrote {', '.join(OUTPUTS)} to {out}")


def build_parser():
    return function_parser(replace, "hifilight replace")


def run(argv: list[str]) -> None:
    run_function(replace, "hifilight replace", argv)
