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
