"""The subject artifact: learned embeddings in safetensors, with JSON metadata in the same file's header.

One file, written atomically. Tensors: `c_s` (n, d); `phi_s` (n, d), the base model's null-text tail, used to
check that the artifact is applied to the text encoder it was trained with; optionally `c_s_t` (T, n, d) with
`timesteps` (T,) for step-wise embeddings (Eq. 7). Metadata: see `SubjectArtifact.metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import hifilight
from hifilight.errors import HifiError
from hifilight.io import write_atomic
from hifilight.validation import check_common_metadata, check_subject_tensors, header_json

FORMAT = "hifilight.subject"
FORMAT_VERSION = 1
METADATA_KEY = "hifilight"


ARCHITECTURES = {"sd": "SD 1.x / 2.x", "sdxl": "SDXL"}  # what `metadata["architecture"]` names


@dataclass
class SubjectArtifact:
    c_s: torch.Tensor
    phi_s: torch.Tensor
    metadata: dict = field(default_factory=dict)
    c_s_t: torch.Tensor | None = None
    timesteps: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return self.c_s.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.c_s.shape[1]

    @property
    def class_name(self) -> str:
        return self.metadata["class_name"]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"c_s": self.c_s, "phi_s": self.phi_s}
        if self.c_s_t is not None:
            out |= {"c_s_t": self.c_s_t, "timesteps": self.timesteps}
        return {
            k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.cpu().contiguous()
            for k, v in out.items()
        }

    def save(self, path: Path, overwrite: bool = False) -> Path:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hifilight_version": hifilight.__version__,
            "num_tokens": self.num_tokens,
            "text_hidden_size": self.hidden_size,
        } | self.metadata
        header = {METADATA_KEY: json.dumps(meta, sort_keys=True)}
        return write_atomic(path, lambda tmp: save_file(self.tensors(), str(tmp), metadata=header), overwrite)

    @classmethod
    def load(cls, path: Path) -> SubjectArtifact:
        path = Path(path).expanduser()
        tensors, header = read_safetensors(path, "--subject")
        source = f"--subject {path}"
        meta = header_json(header, METADATA_KEY, source)
        if meta.get("format") != FORMAT:
            raise HifiError(f"{source}: not a hifilight subject artifact (no '{METADATA_KEY}' metadata)")
        if "format_version" not in meta:
            raise HifiError(f"{source}: no format_version in its metadata; the file is damaged")
        check_common_metadata(meta, source)
        if meta["format_version"] > FORMAT_VERSION:
            raise HifiError(
                f"{source}: written by a newer hifilight (format {meta['format_version']}); upgrade hifilight"
            )
        check_subject_tensors(tensors, meta, source)
        return cls(
            c_s=tensors["c_s"],
            phi_s=tensors["phi_s"],
            metadata=meta,
            c_s_t=tensors.get("c_s_t"),
            timesteps=tensors.get("timesteps"),
        )

    def check_compatible(
        self, base_model: str, text_hidden_size: int, phi_s: torch.Tensor, architecture: str | None = None
    ) -> None:
        """Refuse to apply the embedding to a text encoder it was not trained with (or, when both are known, to
        another architecture: "sd" for SD 1.x / 2.x, "sdxl")."""
        trained_on = self.metadata.get("base_model", "?")
        recorded = self.metadata.get("architecture")
        if architecture and recorded and architecture != recorded:
            raise HifiError(
                f"subject artifact is for {ARCHITECTURES.get(recorded, recorded)} models (trained on {trained_on}) but "
                f"{base_model} is {ARCHITECTURES.get(architecture, architecture)}; pass --model.pretrained {trained_on}"
            )
        if text_hidden_size != self.hidden_size:
            raise HifiError(
                f"subject artifact has text hidden size {self.hidden_size} (trained on {trained_on}) but "
                f"{base_model} has {text_hidden_size}; pass --model.pretrained {trained_on}"
            )
        if not torch.allclose(phi_s.float().cpu(), self.phi_s.float(), atol=1e-2, rtol=1e-2):
            raise HifiError(
                f"subject artifact was trained on {trained_on}, whose text encoder differs from {base_model}'s "
                f"(null-text embeddings differ); pass --model.pretrained {trained_on}"
            )


def read_safetensors(path: Path, flag: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of a safetensors file; a missing or unreadable file is a one-line error."""
    if not path.is_file():
        raise HifiError(f"{flag} {path}: no such file; pass the .safetensors written by `hifilight fit`")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            return tensors, f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise HifiError(f"{flag} {path}: not a readable safetensors file ({err})") from err
