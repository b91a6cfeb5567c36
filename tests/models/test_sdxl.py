"""SDXL (two text encoders, pooled embedding, added time ids) through hifilight's one conditioning tensor, on the
random-weight `tiny-xl` preset: the same images as diffusers' SDXL pipeline, loading from a pipeline folder, and
HiFi Tuner's fit -> predict end to end."""

import dataclasses

import pytest
import torch
from conftest import EXAMPLE_SUBJECT
from diffusers import DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

from hifilight.cli import main
from hifilight.conditioning import encode_text
from hifilight.models import load_components
from hifilight.models.sdxl import PackedSDXLUNet, is_sdxl, sdxl_pipeline
from hifilight.sampling.generate import generate, initial_latents, make_jobs

STEPS, RES = 4, 64


@pytest.fixture(scope="module")
def xl():
    return load_components("tiny-xl")


def _diffusers_pipeline(comps) -> StableDiffusionXLPipeline:
    """`sdxl_pipeline` over a plain diffusers UNet2DConditionModel copy (no hifilight class in the sampling loop)."""
    unet = UNet2DConditionModel.from_config(comps.unet.config)
    unet.load_state_dict(comps.unet.state_dict())
    pipe = sdxl_pipeline(dataclasses.replace(comps, unet=unet.eval()))
    pipe.scheduler = DDIMScheduler.from_config(comps.scheduler.config)
    return pipe


def _diffusers_image(pipe, prompt: str) -> torch.Tensor:
    x_T = initial_latents(0, (1, 4, RES // 8, RES // 8), "cpu")
    return pipe(
        prompt,
        negative_prompt="",
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        height=RES,
        width=RES,
        latents=x_T,
        output_type="pt",
    ).images


def test_packed_conditioning_is_diffusers_prompt_embeds_and_pooled(xl):
    pipe = _diffusers_pipeline(xl)
    embeds, _, pooled, _ = pipe.encode_prompt("a photo of a dog", do_classifier_free_guidance=False)
    packed = encode_text(xl.tokenizer, xl.text_encoder, ["a photo of a dog"])
    assert packed.shape == (1, 78, 80) and xl.text_hidden_size == 80  # 32 + 48: the encoders' widths differ
    torch.testing.assert_close(packed[:, 1:], embeds)
    torch.testing.assert_close(packed[:, 0, :48], pooled)
    assert not packed[:, 0, 48:].any()  # the pooled row is zero-padded


def test_generation_equals_diffusers_sdxl_pipeline(xl):
    ref = _diffusers_image(_diffusers_pipeline(xl), "a photo of a dog")
    ours = generate(xl, None, make_jobs(["a photo of a {}"], "dog", 0, 1), STEPS, 7.5, RES, progress=False)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_an_sdxl_pipeline_folder_loads_as_sdxl(xl, tmp_path):
    _diffusers_pipeline(xl).save_pretrained(tmp_path / "xl")
    loaded = load_components(str(tmp_path / "xl"))
    assert is_sdxl(loaded) and isinstance(loaded.unet, PackedSDXLUNet)
    jobs = make_jobs(["a photo of a {}"], "dog", 0, 1)
    a = generate(xl, None, jobs, STEPS, 7.5, RES, progress=False)
    b = generate(loaded, None, jobs, STEPS, 7.5, RES, progress=False)
    torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def fitted_xl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xl_fit")
    out = tmp / "dog_xl.safetensors"
    fit = ["fit", "--method", "hifi_ti", "--model.pretrained", "tiny-xl", "--data.subject_dir", str(EXAMPLE_SUBJECT)]
    fit += ["--data.class_name", "dog", "--data.resolution", "64", "--model.stage1_steps", "3"]
    fit += ["--model.stepwise_steps", "1", "--model.stepwise_num_steps", "3", "--trainer.enable_progress_bar", "false"]
    fit += ["--trainer.default_root_dir", str(tmp / "logs"), "--out", str(out)]
    assert main(fit) == 0
    return out


def test_hifi_fit_and_predict_on_sdxl_and_sd1_subjects_are_refused(fitted_xl, tmp_path, capsys):
    out = fitted_xl
    predict = ["predict", "--subject", str(out), "--prompts", '["a {} on the beach"]', "--num_images", "1"]
    predict += ["--steps", "3", "--out_dir", str(tmp_path / "images")]
    assert main(predict) == 0
    assert (tmp_path / "images" / "grid.png").is_file()
    from hifilight.artifacts import SubjectArtifact

    art = SubjectArtifact.load(out)
    assert art.c_s.shape[-1] == 80 and art.metadata["base_model"] == "tiny-xl"
    capsys.readouterr()
    assert main([*predict[:-1], str(tmp_path / "other"), "--model.pretrained", "tiny"]) == 2
    assert (
        "subject artifact is for SDXL models (trained on tiny-xl) but tiny is SD 1.x / 2.x" in capsys.readouterr().err
    )
    assert art.metadata["architecture"] == "sdxl"
    art.metadata["architecture"] = "sd"  # as if an SD artifact of the same width: the architecture decides
    art.save(tmp_path / "relabelled.safetensors")
    assert main([*predict[:2], str(tmp_path / "relabelled.safetensors"), *predict[3:-1], str(tmp_path / "r")]) == 2
    assert "is for SD 1.x / 2.x models" in capsys.readouterr().err


def test_invert_and_replace_run_on_sdxl(fitted_xl, tmp_path, capsys):
    image = str(sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[0])
    common = ["--steps", "3", "--resolution", "64", "--null_text.inner_steps", "2"]
    invert = ["invert", "--image", image, "--caption", "a photo of a dog", "--model.pretrained", "tiny-xl"]
    assert main([*invert, *common, "--out", str(tmp_path / "inv")]) == 0
    assert "null-text inversion" in capsys.readouterr().out
    replace = ["replace", "--image", image, "--subject", str(fitted_xl), "--source_word", "dog"]
    replace += ["--caption", "a photo of a dog", *common, "--out", str(tmp_path / "rep")]
    assert main(replace) == 0
    assert (tmp_path / "rep" / "edited.png").is_file()


def test_evaluate_runs_the_hifi_row_on_sdxl(tmp_path):
    import json
    import shutil

    root = tmp_path / "bench" / "dog_a"
    root.mkdir(parents=True)
    for f in sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:2]:
        shutil.copy(f, root / f.name)
    (root.parent / "subjects.csv").write_text("subject_name,class\ndog_a,dog\n")
    args = ["evaluate", "--dataset", str(root.parent), "--method", "hifi_ti", "--out", str(tmp_path / "out")]
    args += ["--images_per_prompt", "1", "--prompts", "[0]", "--model.pretrained", "tiny-xl", "--steps", "2"]
    args += ["--resolution", "64", "--metrics.dino_model", "tiny", "--metrics.clip_model", "tiny"]
    args += ["--fit_args", json.dumps(["--model.stage1_steps", "2", "--model.stepwise_steps", "1"])]
    assert main(args) == 0
    assert "hifi_ti" in (tmp_path / "out" / "results.csv").read_text()


def _fit_with_prior(tmp_path, method: str, learning_rate: str, out) -> list[str]:
    """A 2-step fit on tiny-xl with one class image (DreamBooth-style methods)."""
    fit = ["fit", "--method", method, "--model.pretrained", "tiny-xl", "--data.subject_dir", str(EXAMPLE_SUBJECT)]
    fit += ["--data.class_name", "dog", "--data.resolution", "64", "--model.max_steps", "2"]
    fit += ["--model.learning_rate", learning_rate, "--model.num_class_images", "1", "--model.class_steps", "2"]
    fit += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "logs")]
    return [*fit, "--out", str(out)]


def test_dreambooth_on_sdxl_writes_a_folder_diffusers_loads_with_the_same_image(tmp_path):
    out = tmp_path / "dog_db"
    assert main(_fit_with_prior(tmp_path, "dreambooth", "1e-3", out)) == 0
    pipe = StableDiffusionXLPipeline.from_pretrained(out)  # plain diffusers, no hifilight class
    assert type(pipe.unet) is UNet2DConditionModel
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    tuned = load_components(str(out))
    jobs = make_jobs(["a photo of a {}"], "sks dog", 0, 1)
    ours = generate(tuned, None, jobs, STEPS, 7.5, RES, progress=False)
    torch.testing.assert_close(ours, _diffusers_image(pipe, "a photo of a sks dog"), atol=1e-4, rtol=1e-4)
    base = generate(load_components("tiny-xl"), None, jobs, STEPS, 7.5, RES, progress=False)
    assert not torch.allclose(ours, base, atol=1e-3)  # the UNet was fine-tuned


def test_a_lora_fitted_on_sdxl_loads_in_diffusers_sdxl_with_the_same_image(xl, tmp_path):
    pytest.importorskip("peft")
    from hifilight.subjects import load_subject

    out = tmp_path / "dog_lora.safetensors"
    assert main(_fit_with_prior(tmp_path, "lora", "0.05", out)) == 0
    subject, comps = load_subject(out), load_components("tiny-xl")
    subject.prepare(comps)
    jobs = make_jobs(["a photo of a {}"], subject.word, 0, 1)
    ours = generate(comps, None, jobs, STEPS, 7.5, RES, progress=False)
    pipe = _diffusers_pipeline(xl)
    pipe.load_lora_weights(str(out))
    torch.testing.assert_close(ours, _diffusers_image(pipe, "a photo of a sks dog"), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, generate(xl, None, jobs, STEPS, 7.5, RES, progress=False), atol=1e-3)
    from hifilight.errors import HifiError

    with pytest.raises(HifiError, match="its LoRA does not fit this base model's UNet") as err:
        subject.prepare(load_components("tiny"))  # an SD-layout UNet of other widths
    assert "\n" not in str(err.value) and "--model.pretrained tiny-xl" in str(err.value)


def test_textual_inversion_on_sdxl_writes_both_tables_and_diffusers_renders_the_same_image(xl, tmp_path, capsys):
    from safetensors.torch import load_file

    from hifilight.errors import HifiError
    from hifilight.subjects import load_subject

    out = tmp_path / "dog_ti.safetensors"
    fit = ["fit", "--method", "textual_inversion", "--model.pretrained", "tiny-xl", "--data.subject_dir"]
    fit += [str(EXAMPLE_SUBJECT), "--data.class_name", "dog", "--data.resolution", "64", "--model.max_steps", "3"]
    fit += ["--model.num_vectors", "2", "--model.learning_rate", "0.5", "--trainer.enable_progress_bar", "false"]
    assert main([*fit, "--trainer.default_root_dir", str(tmp_path / "logs"), "--out", str(out)]) == 0
    tables = load_file(str(out))
    assert (
        sorted(tables) == ["clip_g", "clip_l"]
        and tables["clip_l"].shape == (2, 32)
        and tables["clip_g"].shape == (2, 48)
    )
    initial = xl.text_encoder.second.get_input_embeddings().weight[xl.tokenizer.second("dog").input_ids[1]]
    assert not torch.allclose(tables["clip_g"][0], initial)  # the second encoder's rows were trained too
    subject, comps = load_subject(out), load_components("tiny-xl")
    subject.prepare(comps)
    jobs = make_jobs(["a photo of a {}"], subject.word, 0, 1)
    ours = generate(comps, None, jobs, STEPS, 7.5, RES, progress=False)
    pipe = _diffusers_pipeline(load_components("tiny-xl"))  # what SDXL embeddings' users do, one table per encoder
    pipe.load_textual_inversion(
        tables["clip_l"], token="<sks>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    pipe.load_textual_inversion(
        tables["clip_g"], token="<sks>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    torch.testing.assert_close(ours, _diffusers_image(pipe, "a photo of a <sks> dog"), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, generate(xl, None, make_jobs(["a photo of a {}"], "dog", 0, 1), STEPS, 7.5, RES,
                                             progress=False), atol=1e-3)  # fmt: skip
    with pytest.raises(HifiError, match="SDXL.*but this text encoder is SD 1.x / 2.x") as err:
        subject.prepare(load_components("tiny"))
    assert "\n" not in str(err.value) and "tiny-xl" in str(err.value)


def test_an_sd1_token_embedding_on_sdxl_is_refused_in_one_line(tmp_path, capsys):
    from hifilight.errors import HifiError
    from hifilight.token_embeddings import TokenEmbedding

    emb = TokenEmbedding("<sks>", torch.zeros(1, 32), {"base_model": "tiny"})
    with pytest.raises(HifiError, match="SD 1.x / 2.x.*but this text encoder is SDXL.*use the base model it was"):
        emb.apply(*(lambda c: (c.tokenizer, c.text_encoder))(load_components("tiny-xl")))


def test_onnx_export_of_sdxl_is_refused_in_one_line(tmp_path, capsys):
    assert main(["export", "onnx", "--model.pretrained", "tiny-xl", "--out", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err
    error = err.strip().splitlines()[-1]  # after the random-weights note
    assert (
        "diffusers has no ONNX SDXL pipeline" in error and "Traceback" not in err and not (tmp_path / "onnx").exists()
    )


def test_python_api_renders_an_sdxl_subject_and_the_sd1_helper_refuses_sdxl(fitted_xl):
    from hifilight.api import SubjectEmbeddings, render_subject
    from hifilight.errors import HifiError

    images = render_subject(str(fitted_xl), ["a {} on the beach"], steps=2)
    assert len(images) == 1 and images[0].size == (64, 64)
    with pytest.raises(HifiError, match="for SDXL use hifilight.api.render_subject"):
        SubjectEmbeddings.load(fitted_xl, sdxl_pipeline(load_components("tiny-xl")))
