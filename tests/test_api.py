"""The Python API: a subject artifact in a plain diffusers StableDiffusionPipeline gives hifilight's image."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_artifact, sd_pipeline
from PIL import Image

from hifilight.api import SubjectEmbeddings, render_subject
from hifilight.cli import main
from hifilight.errors import HifiError
from hifilight.sampling.generate import generate, make_jobs

pytestmark = pytest.mark.numerical

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def subject(tiny, tmp_path):
    steps = make_artifact(tiny, steps=4).c_s_t.shape[0]
    g = torch.Generator().manual_seed(1)
    c_s_t = make_artifact(tiny, steps=4).c_s.expand(steps, 5, 32) + 0.5 * torch.randn(steps, 5, 32, generator=g)
    art = make_artifact(tiny, steps=4, c_s_t=c_s_t)  # a different embedding at every step: Eq. 7 matters
    art.metadata["resolution"] = 32
    return art.save(tmp_path / "dog.safetensors")


@pytest.mark.parametrize("stepwise", [True, False])
def test_the_pipeline_with_the_api_draws_what_hifilight_draws(stepwise, subject, tiny):
    pipe = sd_pipeline(**tiny.__dict__)
    emb = SubjectEmbeddings.load(subject, pipe)
    kwargs = emb.pipeline_kwargs("a {} on the beach", stepwise=stepwise)
    assert kwargs["num_inference_steps"] == 4  # the steps the c_s^t were trained for
    got = pipe(
        **kwargs, guidance_scale=7.5, height=32, width=32, generator=torch.Generator().manual_seed(5), output_type="pt"
    ).images
    jobs = make_jobs(["a {} on the beach"], "dog", 5, 1)
    expected = generate(tiny, emb.artifact, jobs, 4, 7.5, 32, stepwise=stepwise, progress=False)
    assert (got - expected).abs().max() < 1e-4
    if stepwise:  # and the step-wise embeddings change the image
        plain = generate(tiny, emb.artifact, jobs, 4, 7.5, 32, stepwise=False, progress=False)
        assert (plain - expected).abs().max() > 1e-3


def test_the_api_image_is_the_predict_image(subject, tiny, tmp_path):
    args = [
        "predict",
        "--subject",
        str(subject),
        "--prompts",
        '["a {} on the beach"]',
        "--seed",
        "5",
        "--steps",
        "4",
        "--out_dir",
        str(tmp_path / "p"),
    ]
    assert main(args) == 0
    (png,) = (tmp_path / "p").glob("000_*.png")
    pipe = sd_pipeline(**tiny.__dict__)
    kwargs = SubjectEmbeddings.load(subject, pipe).pipeline_kwargs("a {} on the beach")
    image = pipe(**kwargs, guidance_scale=7.5, height=32, width=32, generator=torch.Generator().manual_seed(5)).images[
        0
    ]
    diff = np.abs(np.asarray(image, dtype=int) - np.asarray(Image.open(png), dtype=int))
    assert diff.max() <= 1  # the same image, up to a rounding of the last bit
    (rendered,) = render_subject(subject, ["a {} on the beach"], seed=5, steps=4)  # in memory, for notebooks
    assert np.array_equal(np.asarray(rendered), np.asarray(Image.open(png)))


def test_an_artifact_of_another_text_encoder_is_refused(subject, tmp_path):
    from hifilight.models.tiny import build_tiny

    other = sd_pipeline(**build_tiny(seed=7))
    with pytest.raises(HifiError, match="text encoder differs"):
        SubjectEmbeddings.load(subject, other)


def test_the_readme_snippet_runs(subject, tiny, tmp_path):
    block = re.search(r"## Python API.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    sd_pipeline(**tiny.__dict__).save_pretrained(tmp_path / "sd")
    for old, new in (
        ('"CompVis/stable-diffusion-v1-4"', tmp_path / "sd"),
        ('"dog.safetensors"', subject),
        ('"dog.png"', tmp_path / "dog.png"),
    ):
        block = block.replace(old, repr(str(new)))
    exec(compile(block, "README.md", "exec"), {})
    assert Image.open(tmp_path / "dog.png").mode == "RGB"


def test_fit_as_a_function_writes_what_the_cli_writes(tmp_path):
    from conftest import EXAMPLE_SUBJECT

    from hifilight.api import fit
    from hifilight.artifacts import SubjectArtifact

    options = {
        "model.stage1_steps": 2,
        "model.stepwise_steps": 0,
        "data.resolution": 32,
        "data.masks": "none",
        "model.use_mask": False,
        "trainer.enable_progress_bar": False,
        "trainer.default_root_dir": str(tmp_path / "logs"),
    }
    out = fit(EXAMPLE_SUBJECT, "dog", tmp_path / "api.safetensors", pretrained="tiny", options=options)
    cli = [
        "fit",
        "--model.pretrained",
        "tiny",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--out",
        str(tmp_path / "cli.safetensors"),
    ]
    cli += [a for k, v in options.items() for a in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))]
    assert main(cli) == 0
    a, b = SubjectArtifact.load(out), SubjectArtifact.load(tmp_path / "cli.safetensors")
    assert torch.equal(a.c_s, b.c_s) and a.class_name == "dog"
    with pytest.raises(HifiError, match="already exists"):  # nothing of the user's is overwritten
        fit(EXAMPLE_SUBJECT, "dog", out, pretrained="tiny", options=options)
