"""ToyWorld's exact quality measures, read by the ToyWorld classifier (whose accuracy on fresh renders is reported
with its weights) and ToyDINO:

- subject fidelity: how often the generated object has *all* of the subject's attributes (shape, colour, pattern,
  pattern colour) -- `identity`; the mean per-attribute match -- `attributes`; the classifier's mean probability of
  the subject's values -- `confidence`; and the ToyDINO cosine to the subject's source photos -- `toydino`.
- prompt fidelity: how often the image shows what the prompt asks for -- the background of "a {} on the beach",
  the colour of "a red {}" -- `prompt`.

A recolour prompt ("a red {0} {1}") asks to change the subject's main colour, so for it `identity`, `attributes`
and `confidence` leave the colour out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from PIL import Image

from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, ToyObject

SUBJECT_ATTRIBUTES = ("shape", "color", "pattern", "pattern_color")
MEASURES = ("identity", "attributes", "confidence", "toydino", "prompt")


@dataclass(frozen=True)
class PromptTarget:
    """What a prompt asks for besides the subject: a background, or a new main colour."""

    background: str | None = None
    color: str | None = None


def prompt_target(prompt: str, strict: bool = True) -> PromptTarget:
    """Parse a ToyWorld prompt ("a {0} {1} on the beach", "a red {0} {1}", or its rendered text); one that asks for
    nothing besides the subject ("a photo of a {0} {1}") is an error, or an empty target when not `strict`."""
    for name, phrase in BACKGROUNDS.items():
        if prompt.rstrip().endswith(phrase):
            return PromptTarget(background=name)
    words = re.findall(r"[a-z]+", prompt.lower())
    colors = [w for w in words[:2] if w in COLORS]
    if colors:
        return PromptTarget(color=colors[0])
    if not strict:
        return PromptTarget()
    raise ValueError(f"{prompt!r} asks for no ToyWorld background or colour")


def subject_match(
    probs: dict[str, torch.Tensor], subject: ToyObject, keys: tuple[str, ...] = SUBJECT_ATTRIBUTES
) -> torch.Tensor:
    """(N, len(keys)) booleans: whether each image's read value of each attribute is the subject's."""
    from hifilight.toyworld.models import ATTRIBUTES

    return torch.stack([probs[k].argmax(-1) == ATTRIBUTES[k].index(getattr(subject, k)) for k in keys], 1)


class ToyJudge:
    """Scores generated images against a subject and a prompt with the ToyWorld classifier adapted to ToySD's
    decoder (`classifier_toysd`: fine-tuned on VAE reconstructions and blurred renders, see
    `vae_training.adapt_classifier`), which reads ToySD's soft outputs better than the one trained on crisp renders."""

    def __init__(self, encoder=None):
        from hifilight.toyworld.perception import ToyDinoEncoder

        self.encoder = encoder or ToyDinoEncoder("classifier_toysd")

    @torch.no_grad()
    def read(self, images: list[Image.Image]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Attribute probabilities and ToyDINO embeddings from one pass of the classifier."""
        from hifilight.toyworld.perception import _inputs

        model = self.encoder.model
        h = model.features(_inputs(images))
        return {k: head(h).softmax(-1) for k, head in model.heads.items()}, torch.nn.functional.normalize(h, dim=-1)

    def score(
        self,
        images: list[Image.Image],
        subject: ToyObject,
        prompt: str,
        sources: torch.Tensor,
        reading: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """The five measures, each a mean over `images`; `sources` = ToyDINO embeddings of the subject's photos;
        `reading`: what `read(images)` gave, when the caller already has it. A prompt that asks for nothing besides
        the subject ("a photo of a star") has no prompt measure (None)."""
        from hifilight.toyworld.models import ATTRIBUTES

        target = prompt_target(prompt, strict=False)
        probs, embeddings = reading or self.read(images)
        keys = [k for k in SUBJECT_ATTRIBUTES if not (k == "color" and target.color)]
        match = subject_match(probs, subject, keys)
        conf = torch.stack([probs[k][:, ATTRIBUTES[k].index(getattr(subject, k))] for k in keys], 1)
        if target.background:
            asked = probs["background"].argmax(-1) == ATTRIBUTES["background"].index(target.background)
        elif target.color:
            asked = probs["color"].argmax(-1) == ATTRIBUTES["color"].index(target.color)
        else:
            asked = None
        cosine = embeddings @ sources.T
        return {
            "identity": match.all(1).float().mean().item(),
            "attributes": match.float().mean().item(),
            "confidence": conf.mean().item(),
            "toydino": cosine.mean().item(),
            "prompt": asked.float().mean().item() if asked is not None else None,
        }
