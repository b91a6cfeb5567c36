"""Shared fixtures: tiny seeded models (no network), small subject folders, a trained tiny artifact."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from hifilight.models import load_components

EXAMPLE_SUBJECT = Path(__file__).resolve().parents[1] / "hifilight" / "assets" / "example_subject"


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    return load_components("tiny")


def write_image(path: Path, size=(48, 40), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


@pytest.fixture
def subject_dir(tmp_path) -> Path:
    """Three random 48x40 RGB photos with 0/255 masks (a centred box) under masks/."""
    folder = tmp_path / "photos"
    (folder / "masks").mkdir(parents=True)
    for i in range(3):
        write_image(folder / f"{i:02d}.png", seed=i)
        mask = np.zeros((40, 48), dtype=np.uint8)
        mask[10:30, 12:36] = 255
        Image.fromarray(mask).save(folder / "masks" / f"{i:02d}.png")
    return folder


def fit_args(subject_dir, out, root, *extra) -> list[str]:
    """`hifilight fit` arguments for a tiny run at 32 px on CPU: 4 stage-1 steps, then 3 timesteps x 1 step."""
    settings = {
        "data.subject_dir": subject_dir,
        "data.class_name": "dog",
        "data.resolution": 32,
        "model.stage1_steps": 4,
        "model.stepwise_steps": 1,
        "model.stepwise_num_steps": 3,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        "trainer.default_root_dir": root,
        "out": out,
    }
    return ["fit", *[f"--{k}={v}" for k, v in settings.items()], *extra]


def sd_pipeline(unet, vae, text_encoder, tokenizer, scheduler, **_):
    """A diffusers StableDiffusionPipeline around the given components (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ConstantNoiseUNet(torch.nn.Module):
    """Predicts the same noise at every x_t and t: the case where DDIM inversion is exact (eps(x_t) = eps(x_{t-1}))."""

    def __init__(self, eps):
        super().__init__()
        self.eps, self.dtype = eps, eps.dtype

    def forward(self, x, t, encoder_hidden_states=None):
        context = 0.0 if encoder_hidden_states is None else 0.0 * encoder_hidden_states.sum()  # keeps a graph
        return SimpleNamespace(sample=self.eps.expand_as(x) + context)


def make_artifact(tiny, steps=4, c_s_t=None):
    """A subject artifact for the tiny model: c_s = null tail + noise, c_s^t = c_s at each of `steps` timesteps."""
    from hifilight.artifacts import SubjectArtifact
    from hifilight.conditioning import encode_text, null_tail
    from hifilight.sampling import DDIMSchedule

    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    c_s = null_tail(phi, 5) + 0.3 * torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    timesteps = DDIMSchedule.from_scheduler(tiny.scheduler, steps).timesteps
    stepwise = c_s.expand(steps, 5, 32).clone() if c_s_t is None else c_s_t
    return SubjectArtifact(
        c_s=c_s,
        phi_s=null_tail(phi, 5),
        metadata={"base_model": "tiny", "class_name": "dog"},
        c_s_t=stepwise,
        timesteps=timesteps,
    )


@pytest.fixture(scope="session")
def serve_subjects(tiny, tmp_path_factory):
    """A service subjects folder: a HiFi artifact with photos (reference guidance), a Textual Inversion embedding,
    a corrupt file and an artifact of another base model."""
    import shutil

    from hifilight.token_embeddings import TokenEmbedding

    folder = tmp_path_factory.mktemp("subjects")
    make_artifact(tiny, steps=4).save(folder / "dog.safetensors")
    (folder / "dog").mkdir()
    for image in sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:3]:
        shutil.copy(image, folder / "dog" / image.name)
    vectors = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    TokenEmbedding("<toy>", vectors, {"class_name": "toy", "base_model": "tiny", "resolution": 32}).save(
        folder / "toy.safetensors"
    )
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    other = make_artifact(tiny, steps=4)
    other.phi_s = other.phi_s + 1.0  # as if trained on another text encoder
    other.save(folder / "other.safetensors")
    damaged = make_artifact(tiny, steps=4)
    save_file(damaged.tensors(), str(folder / "listmeta.safetensors"), metadata={"hifilight": "[1, 2]"})
    damaged.c_s = damaged.c_s * float("nan")
    damaged.save(folder / "nan.safetensors")
    (folder / "legacy.pt").write_bytes(b"\x80\x04pickle")
    return folder


@pytest.fixture(scope="session")
def fitted(tmp_path_factory):
    """A HiFi subject fitted by `hifilight fit` on the tiny preset (4 stage-1 steps, 3 step-wise timesteps)."""
    from hifilight.cli import main

    tmp = tmp_path_factory.mktemp("fit")
    out = tmp / "dog.safetensors"
    assert main(fit_args(EXAMPLE_SUBJECT, out, tmp / "logs")) == 0
    return out
