"""Classic Textual Inversion embeddings (Gal et al.): new tokens in the text encoder's *input* embedding table.

File layout: the common `{token: tensor (num_vectors, d)}` safetensors (what diffusers' `load_textual_inversion`
reads; multi-vector tokens expand to "<tok>", "<tok>_1", ...), plus hifilight's JSON metadata in the header
(base model, class word, resolution) under the key "hifilight". Only safetensors is read.

SDXL has two token tables, one per text encoder: its embeddings are the layout AUTOMATIC1111, ComfyUI and diffusers'
SDXL docs use, `{"clip_l": (num_vectors, d1), "clip_g": (num_vectors, d2)}` (rows for the first and the second
encoder), the token named by hifilight's metadata (or, for a file from elsewhere, by the file name, as A1111 does).
In memory the rows of both tables are one (num_vectors, d1 + d2) tensor, split by `widths`.
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
SDXL_KEYS = ("clip_l", "clip_g")  # the two tables' rows in an SDXL embedding file


def _parts(joined) -> tuple:
    """SDXL's joined tokenizer / text encoder expose their two parts as `parts`; SD's are one."""
    return getattr(joined, "parts", (joined,))


def token_tables(tokenizer, text_encoder) -> list[tuple]:
    """(tokenizer, text encoder) per token table: one for SD 1.x / 2.x, two for SDXL."""
    return list(zip(_parts(tokenizer), _parts(text_encoder), strict=True))


def table_widths(text_encoder) -> tuple[int, ...]:
    """The width of each token table's rows (SDXL: (768, 1280) at full size)."""
    return tuple(e.get_input_embeddings().weight.shape[1] for e in _parts(text_encoder))


def token_names(placeholder: str, num_vectors: int) -> list[str]:
    """diffusers' naming of a multi-vector token: <tok>, <tok>_1, ..., <tok>_{n-1}."""
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_vectors)]


@dataclass
class TokenEmbedding:
    placeholder: str
    vectors: torch.Tensor  # (num_vectors, d): one token table's rows, or both of SDXL's side by side
    metadata: dict = field(default_factory=dict)
    widths: tuple[int, ...] = ()  # SDXL: the two tables' widths (d1, d2); empty for one table

    def table_rows(self) -> list[torch.Tensor]:
        """The rows for each token table, in `token_tables` order."""
        return list(self.vectors.split(list(self.widths), dim=1)) if self.widths else [self.vectors]

    @property
    def tokens(self) -> list[str]:
        return token_names(self.placeholder, self.vectors.shape[0])

    @property
    def prompt_text(self) -> str:
        """What stands for the subject in a prompt: all its tokens, space-separated."""
        return " ".join(self.tokens)

    def save(self, path: Path, overwrite: bool = False) -> Path:
        meta = {"format": FORMAT, "placeholder": self.placeholder} | self.metadata
        rows = [r.detach().float().cpu().contiguous() for r in self.table_rows()]
        tensors = dict(zip(SDXL_KEYS, rows, strict=True)) if self.widths else {self.placeholder: rows[0]}
        header = {"hifilight": json.dumps(meta, sort_keys=True)}
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), overwrite)

    @classmethod
    def load(cls, path: Path) -> TokenEmbedding:
        path = Path(path).expanduser()
        tensors, header = read_safetensors(path, "--subject")
        source = f"--subject {path}"
        meta = header_json(header, "hifilight", source)
        if meta:
            check_common_metadata(meta, source, needs_class=False)
        if set(tensors) == set(SDXL_KEYS):
            placeholder = meta.get("placeholder") or f"<{path.stem}>"
            for key in SDXL_KEYS:
                check_token_vectors(key, tensors[key], source)
            rows = [tensors[k].reshape(-1, tensors[k].shape[-1]) for k in SDXL_KEYS]
            if len(rows[0]) != len(rows[1]):
                raise HifiError(
                    f"{source}: clip_l has {len(rows[0])} vectors but clip_g {len(rows[1])}; the file is damaged"
                )
            return cls(placeholder, torch.cat(rows, dim=1), meta, tuple(r.shape[1] for r in rows))
        if len(tensors) != 1:
            raise HifiError(
                f"{source}: expected one {{token: tensor}} entry (or SDXL's clip_l and clip_g), found {len(tensors)}"
            )
        ((placeholder, vectors),) = tensors.items()
        check_token_vectors(placeholder, vectors, source)
        return cls(placeholder, vectors.reshape(-1, vectors.shape[-1]), meta)

    def apply(self, tokenizer, text_encoder) -> list[int]:
        """Add the tokens to each token table and write their rows; returns their ids in the first table."""
        widths, theirs = self.widths or (self.vectors.shape[1],), table_widths(text_encoder)
        if widths != theirs:
            raise HifiError(
                f"token embedding {self.placeholder} is for {_kind(widths)} (token rows of width {list(widths)}) but "
                f"this text encoder is {_kind(theirs)} ({list(theirs)}); use the base model it was trained on "
                f"({self.metadata.get('base_model', 'see where it came from')})"
            )
        all_ids = []
        for (tok, enc), rows in zip(token_tables(tokenizer, text_encoder), self.table_rows(), strict=True):
            all_ids.append(add_tokens(tok, enc, self.tokens))
            with torch.no_grad():
                table = enc.get_input_embeddings().weight
                table[all_ids[-1]] = rows.to(table)
        return all_ids[0]


def _kind(widths: tuple[int, ...]) -> str:
    return "SDXL" if len(widths) == 2 else "SD 1.x / 2.x"


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
