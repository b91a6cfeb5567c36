"""Classic Textual Inversion: only the placeholder vectors train; the file loads here and in diffusers."""

import torch
from conftest import EXAMPLE_SUBJECT, sd_pipeline

from hifilight.cli import main
from hifilight.models import load_components
from hifilight.models.tiny import build_tiny
from hifilight.token_embeddings import TokenEmbedding


def _fit(tmp_path, *extra):
    out = tmp_path / "ti.safetensors"
    args = [
        "fit",
        "--method",
        "textual_inversion",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--data.masks",
        "none",
        "--model.max_steps",
        "3",
        "--model.learning_rate",
        "0.05",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "logs"),
        "--out",
        str(out),
        *extra,
    ]
    assert main(args) == 0
    return TokenEmbedding.load(out), out


def test_only_the_placeholder_vectors_change(tmp_path):
    emb, _ = _fit(tmp_path, "--model.num_vectors", "2")
    assert emb.tokens == ["<sks>", "<sks>_1"] and emb.vectors.shape == (2, 32)
    assert emb.metadata["class_name"] == "dog" and emb.metadata["base_model"] == "tiny"
    base = load_components("tiny")
    dog = base.tokenizer("dog", add_special_tokens=False).input_ids
    init = base.text_encoder.get_input_embeddings().weight[dog].mean(0)
    assert not torch.allclose(emb.vectors[0], init)  # trained away from the class word's embedding
    table_before = base.text_encoder.get_input_embeddings().weight.detach().clone()
    ids = emb.apply(base.tokenizer, base.text_encoder)
    table = base.text_encoder.get_input_embeddings().weight
    assert ids == [len(table_before), len(table_before) + 1]
    assert torch.equal(table[: len(table_before)], table_before)  # every existing row is untouched
    assert torch.equal(table[ids], emb.vectors)
    assert base.tokenizer.tokenize("a <sks> <sks>_1")[-2:] == ["<sks>", "<sks>_1"]


def test_the_file_loads_in_diffusers(tmp_path):
    emb, path = _fit(tmp_path)
    pipe = sd_pipeline(**build_tiny())
    pipe.load_textual_inversion(str(path))
    token_id = pipe.tokenizer.convert_tokens_to_ids("<sks>")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id], emb.vectors[0])


def test_existing_token_is_refused(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    args = [
        "fit",
        "--method",
        "textual_inversion",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--model.placeholder",
        "a",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "already in the tokenizer's vocabulary" in capsys.readouterr().err


def test_an_sdxl_embedding_from_elsewhere_loads_by_its_file_name_and_a_damaged_one_is_refused(tmp_path):
    """A1111 / ComfyUI SDXL embeddings carry no token name: the file name is the token, as there."""
    import pytest
    from safetensors.torch import save_file

    from hifilight.errors import HifiError

    path = tmp_path / "mydog.safetensors"
    save_file({"clip_l": torch.ones(2, 32), "clip_g": torch.full((2, 48), 2.0)}, str(path))
    emb = TokenEmbedding.load(path)
    assert emb.placeholder == "<mydog>" and emb.widths == (32, 48) and emb.vectors.shape == (2, 80)
    comps = load_components("tiny-xl")
    first, second = emb.apply(comps.tokenizer, comps.text_encoder), comps.tokenizer.second.convert_tokens_to_ids
    assert torch.equal(comps.text_encoder.first.get_input_embeddings().weight[first[1]], torch.ones(32))
    assert torch.equal(
        comps.text_encoder.second.get_input_embeddings().weight[second("<mydog>_1")], torch.full((48,), 2.0)
    )
    save_file({"clip_l": torch.ones(2, 32), "clip_g": torch.ones(1, 48)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(HifiError, match="clip_l has 2 vectors but clip_g 1"):
        TokenEmbedding.load(tmp_path / "bad.safetensors")
