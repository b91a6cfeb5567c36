"""ToySD's training corpus: renders of the pretraining objects (the subjects held out), the captions each is shown
with, and their latents at the scale the UNet sees."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL

from hifilight.toyworld.dataset import pretraining_objects
from hifilight.toyworld.models import to_input
from hifilight.toyworld.scenes import BACKGROUNDS, Scene, random_scene, render
from hifilight.toyworld.toysd import SIZE


def caption_variant(scene: Scene, rng: np.random.Generator, drop: float = 0.1, partial: float = 0.2) -> str:
    """The caption a training image is shown with: mostly the full one, sometimes a partial one (so prompts that
    leave out colour, pattern or background, like HiFi Tuner's "a photo of a star", are in distribution), and
    `drop` of the time the empty caption (for classifier-free guidance).

    `partial` of the time the caption names the shape with only some of the other attributes ("a blue star on the
    beach", "a star with yellow dots"): every held-out subject's colour-and-pattern combination was seen in
    pretraining only on *other* shapes, so a model that ties the shape to the rest of the description draws one of
    those shapes for the full description; captions that name the shape with a random subset of the rest make the
    shape word decide the shape on its own (attribute dropout; a choice of ours, 0 gives the earlier mix)."""
    u = rng.random()
    obj, where = scene.obj, BACKGROUNDS[scene.background]
    if u < drop:
        return ""
    if u < drop + 0.1:
        return f"a photo of a {obj.shape}"
    if u < drop + 0.2:
        return f"a {obj.shape} {where}"
    if u < drop + 0.2 + partial:
        return f"a {partial_words(obj, rng)}" + (f" {where}" if rng.random() < 0.5 else "")
    if u < drop + 0.3 + partial:
        return f"a {obj.words}"
    return scene.caption


def partial_words(obj, rng: np.random.Generator) -> str:
    """The object named by its shape and one of: its colour, its pattern (with its colour), or both colours."""
    if obj.pattern == "plain":
        return f"{obj.color} {obj.shape}"
    noun = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}[obj.pattern]
    return [
        f"{obj.color} {obj.shape}",
        f"{obj.shape} with {obj.pattern_color} {noun}",
        f"{obj.pattern} {obj.shape}",
        f"{obj.color} {obj.pattern} {obj.shape}",
    ][int(rng.integers(4))]


def render_corpus(n: int, seed: int, with_masks: bool = False) -> tuple[torch.Tensor, list, torch.Tensor | None]:
    """n renders of pretraining objects (subjects held out) as [-1, 1] tensors, their scenes and, `with_masks`, the
    objects' (N, 1, SIZE, SIZE) float masks from the same renders (else None)."""
    rng = np.random.default_rng(seed)
    objects = pretraining_objects()
    scenes = [random_scene(rng, objects[i]) for i in rng.integers(len(objects), size=n)]
    drawn = [render(s, SIZE) for s in scenes]
    images = to_input(np.stack([image for image, _ in drawn]))
    masks = torch.from_numpy(np.stack([mask for _, mask in drawn])).float()[:, None] if with_masks else None
    return images, scenes, masks


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, scale: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Posterior means times a scaling factor that gives the latents standard deviation `scale` (SD's 0.18215 gives
    about 1). ToyWorld's flat backgrounds stay readable in x_t up to t ~ T at unit scale, so the UNet learns to copy
    the background from the noise instead of reading it from the caption, and sampling from pure noise then ignores
    the prompt's background; a smaller scale lowers every step's SNR by scale^2 (the "input scaling" of Chen 2023,
    "On the importance of noise scheduling for diffusion models"), with no change to the scheduler."""
    means = torch.cat([vae.encode(images[i : i + chunk]).latent_dist.mean for i in range(0, len(images), chunk)])
    vae.register_to_config(scaling_factor=float(scale / means.std()))
    return means * vae.config.scaling_factor
