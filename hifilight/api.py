"""The Python API: a fitted HiFi subject in your own diffusers `StableDiffusionPipeline`, and any fitted subject's
images in memory (`render_subject`, what `hifilight predict` writes to disk); `fit` is `hifilight fit` as a function.

    subject = SubjectEmbeddings.load("dog.safetensors", pipe)
    image = pipe(**subject.pipeline_kwargs("a {} on the beach", num_inference_steps=50)).images[0]

Nothing in the pipeline changes: the subject goes in through `prompt_embeds` ([c, c_s], Sec. 3.2: c_s replaces the
last n rows of the encoded prompt) with the null text as `negative_prompt_embeds` (phi, as every hifilight sampler
uses), and the step-wise embeddings c_s^t (Eq. 7) through `callback_on_step_end`, which puts the next step's c_s^t
into the prompt embeddings. With a DDIM scheduler and the same seed this is `hifilight predict`'s image
(tests/test_api.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import check_room, encode_text, null_tail, splice_subject
from hifilight.errors import HifiError
from hifilight.prompts import render
from hifilight.sampling.stepwise import nearest_index
from hifilight.subjects import load_subject


@dataclass
class SubjectEmbeddings:
    """A HiFi subject artifact, checked against a pipeline's text encoder, that makes that pipeline's arguments."""

    artifact: SubjectArtifact
    pipe: object  # a diffusers StableDiffusionPipeline (or one with the same call signature)

    @classmethod
    def load(cls, path: str | Path, pipe) -> SubjectEmbeddings:
        """Read the artifact (validated) and refuse it when it was trained on another text encoder."""
        if getattr(pipe, "text_encoder_2", None) is not None:
            raise HifiError(
                "SubjectEmbeddings builds SD 1.x / 2.x prompt_embeds; for SDXL use hifilight.api.render_subject or "
                "`hifilight predict`"
            )
        artifact = SubjectArtifact.load(Path(path))
        phi = cls._null(pipe)
        artifact.check_compatible(
            getattr(pipe, "name_or_path", "this pipeline"),
            pipe.text_encoder.config.hidden_size,
            null_tail(phi, artifact.num_tokens),
        )
        return cls(artifact, pipe)

    @staticmethod
    @torch.no_grad()
    def _null(pipe) -> Tensor:
        return encode_text(pipe.tokenizer, pipe.text_encoder, [""]).float()

    @property
    def class_name(self) -> str:
        return self.artifact.class_name

    @torch.no_grad()
    def pipeline_kwargs(
        self, prompt: str | list[str], num_inference_steps: int | None = None, stepwise: bool | None = None
    ) -> dict:
        """Arguments for `pipe(...)`: prompt_embeds, negative_prompt_embeds, num_inference_steps and, with step-wise
        embeddings, the step callback. `prompt` marks the subject with {} (it becomes the class word, as in
        `hifilight predict`). `num_inference_steps` defaults to the steps the c_s^t were trained for; `stepwise`
        to whether the artifact has them. Add guidance_scale, generator, height, width, ... as usual."""
        art, pipe = self.artifact, self.pipe
        per_step = art.c_s_t is not None if stepwise is None else stepwise
        if per_step and art.c_s_t is None:
            raise HifiError("stepwise=True: this subject artifact has no step-wise embeddings; fit it with them")
        steps = num_inference_steps or (len(art.timesteps) if art.c_s_t is not None else 50)
        texts = [render(p, art.class_name) for p in ([prompt] if isinstance(prompt, str) else prompt)]
        for text in texts:
            check_room(pipe.tokenizer, text, art.num_tokens)
        device, dtype = pipe.text_encoder.device, pipe.text_encoder.dtype
        c = encode_text(pipe.tokenizer, pipe.text_encoder, texts)
        negative = self._null(pipe).to(device, dtype).expand(len(texts), -1, -1)
        kwargs = {"negative_prompt_embeds": negative, "num_inference_steps": steps}
        if not per_step:
            return kwargs | {"prompt_embeds": splice_subject(c, art.c_s.to(device, dtype))}
        timesteps = self._timesteps(steps)
        pick = StepwisePicker(art.c_s_t.to(device, dtype), art.timesteps, timesteps)
        return kwargs | {
            "prompt_embeds": splice_subject(c, pick.embedding(0)),
            "callback_on_step_end": pick,
            "callback_on_step_end_tensor_inputs": ["prompt_embeds"],
        }

    def _timesteps(self, steps: int) -> list[int]:
        scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        scheduler.set_timesteps(steps)
        return [int(t) for t in scheduler.timesteps]


class StepwisePicker:
    """diffusers' `callback_on_step_end`: after step i, the prompt half of the embeddings gets the c_s^t of step
    i + 1's timestep (the nearest trained one when sampling with another number of steps, as hifilight does)."""

    def __init__(self, c_s_t: Tensor, trained: Tensor, timesteps: list[int]):
        self.c_s_t, self.trained, self.timesteps = c_s_t, trained.long().cpu(), timesteps

    def embedding(self, index: int) -> Tensor:
        return self.c_s_t[nearest_index(self.trained, self.timesteps[index])]

    def __call__(self, pipe, i: int, t, callback_kwargs: dict) -> dict:
        if i + 1 >= len(self.timesteps):
            return callback_kwargs
        embeds = callback_kwargs["prompt_embeds"]
        n = self.c_s_t.shape[-2]
        half = embeds.shape[0] // 2 if getattr(pipe, "do_classifier_free_guidance", False) else 0
        updated = embeds.clone()
        updated[half:, -n:] = self.embedding(i + 1).to(embeds.dtype)  # the prompt half; the null half stays phi
        return callback_kwargs | {"prompt_embeds": updated}


def render_subject(
    subject: str | Path,
    prompts: list[str],
    model: str | None = None,
    seed: int = 0,
    num_images: int = 1,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int | None = None,
    batch_size: int = 4,
    stepwise: bool | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> list[Image.Image]:
    """Images of any subject `hifilight fit` wrote (HiFi artifact, Textual Inversion, DreamBooth folder, LoRA), in
    memory: prompts with {} for the subject, image i of a prompt from seed + i, in prompt order. The same images as
    `hifilight predict` with the same settings (tests/test_api.py); for reference-guided generation use predict.

        images = render_subject("dog.safetensors", ["a {} on the beach"], model="CompVis/stable-diffusion-v1-4")
    """
    from hifilight.models import load_components
    from hifilight.options import resolve_device
    from hifilight.sampling.generate import make_jobs
    from hifilight.sampling.renderer import SubjectRenderer

    subj = load_subject(Path(subject))
    per_step = subj.stepwise(stepwise)
    flag = "model" if model else f"subject {subject}: its header's base_model"
    comps = load_components(model or subj.base_model, dtype, resolve_device(device), flag)
    renderer = SubjectRenderer(comps).set_subject(subj, per_step)
    jobs = make_jobs(prompts, subj.word, seed, num_images)
    return [r.image for r in renderer.render(jobs, steps, guidance, resolution, batch_size, progress=False)]


def fit(
    subject_dir: str | Path,
    class_name: str,
    out: str | Path,
    method: str = "hifi_ti",
    pretrained: str | None = None,
    config: str | Path | None = None,
    options: dict[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """`hifilight fit` from Python: learn the subject in `subject_dir` and write `out`; returns `out`.

    `method`: hifi_ti, textual_inversion, dreambooth or lora. `config`: a fit YAML (e.g. configs/hifi_ti.yaml).
    `options`: any fit option by its flag name without the dashes, applied after the config, e.g.
    {"model.stage1_steps": 500, "model.use_mask": True, "data.caption_templates": ["a photo of a {}"]}.
    Bad settings raise HifiError with the CLI's one-line message.

        fit("photos/", "dog", "dog.safetensors", config="configs/hifi_ti.yaml",
            pretrained="CompVis/stable-diffusion-v1-4", options={"model.stage1_steps": 500})
    """
    from hifilight.training.fit_cli import fit as fit_subject

    options = {**(options or {}), **({"model.pretrained": pretrained} if pretrained else {})}
    return fit_subject(method, subject_dir, class_name, out, config=config, options=options, overwrite=overwrite)
