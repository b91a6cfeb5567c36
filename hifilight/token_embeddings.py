"""Classic Textual Inversion embeddings (Gal et al.): new tokens in the text encoder's *input* embedding table.

File layout: the common `{token: tensor (num_vectors, d)}` safetensors (what diffusers' `load_textual_inversion`
reads; multi-vector tokens expand to "<tok>", "<tok>_1", ...), plus hifilight's JSON metadata in the header
(base model, class word, resolution) under the key "hifilight". Only safetensors is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from hifilight.artifacts import read_safetensors
from hifilight.errors import HifiError
from hifilight.io import write_atomic
from hifilight.validation import check_common_metadata, check_token_vectors, header_json

FORMAT = "hifilight.token_embedding"


def token_names(placeholder: str, num_vectors: int) -> list[str]:
    """diffusers' naming of a multi-vector token: <tok>, <tok>_1, ..., <tok>_{n-1}."""
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_vectors)]


@dataclass
class TokenEmbedding:
    placeholder: str
    vectors: torch.Tensor  # (num_vectors, d)
    metadata: dict = field(default_factory=dict)

    @property
    def tokens(self) -> list[str]:
        return token_names(self.placeholder, self.vectors.shape[0])

    @property
    def prompt_text(self) -> str:
        """What stands for the subject in a prompt: all its tokens, space-separated."""
        return " ".join(self.tokens)

    def save(self, path: Path, overwrite: bool = False) -> Path:
        meta = {"format": FORMAT, "placeholder": self.placeholder} | self.metadata
        tensors = {self.placeholder: self.vectors.detach().float().cpu().contiguous()}
        header = {"hifilight": json.dumps(meta, sort_keys=True)}
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), overwrite)

    @classmethod
    def load(cls, path: Path) -> TokenEmbedding:
        tensors, header = read_safetensors(Path(path).expanduser(), "--subject")
        if len(tensors) != 1:
            raise HifiError(f"{path}: expected one {{token: tensor}} entry, found {len(tensors)}")
        ((placeholder, vectors),) = tensors.items()
        source = f"--subject {path}"
        meta = header_json(header, "hifilight", source)
        check_token_vectors(placeholder, vectors, source)
        if meta:
            check_common_metadata(meta, source, needs_class=False)
        return cls(placeholder, vectors.reshape(-1, vectors.shape[-1]), meta)

    def apply(self, tokenizer, text_encoder) -> list[int]:
        """Add the tokens and write their rows into the input embedding table; returns their ids."""
        table = text_encoder.get_input_embeddings()
        if self.vectors.shape[1] != table.weight.shape[1]:
            raise HifiError(
                f"token embedding {self.placeholder} has width {self.vectors.shape[1]} but this text encoder's is "
                f"{table.weight.shape[1]}; use the base model it was trained on ({self.metadata.get('base_model')})"
            )
        ids = add_tokens(tokenizer, text_encoder, self.tokens)
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight[ids] = self.vectors.to(table.weight)
        return ids


def add_tokens(tokenizer, text_encoder, tokens: list[str]) -> list[int]:
    """Add new tokens (refusing ones the vocabulary has) and grow the embedding table; returns their ids."""
    clash = [t for t in tokens if t in tokenizer.get_vocab()]
    if clash:
        raise HifiError(
            f"token {clash[0]!r} is already in the tokenizer's vocabulary; choose another --model.placeholder"
        )
    tokenizer.add_tokens(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the new rows are written by the caller
    return tokenizer.convert_tokens_to_ids(tokens)
