"""One check for every file hifilight reads back: the JSON header of a subject artifact or token embedding and its
tensors (names, shapes, dtypes, finite values, value ranges). `predict`, `evaluate`, `replace`, `attention` and the
service all load through `hifilight.subjects.load_subject`, which calls these; each problem is one line that names
the file and what is wrong with it (not a flag of `fit`).
"""

from __future__ import annotations

import json

import torch

from hifilight.errors import HifiError

MAX_TOKENS = 76  # CLIP's 77 positions minus the start token
RESOLUTIONS = (8, 4096)  # pixels, a multiple of 8
MAX_TRAIN_TIMESTEPS = 10_000
MAX_CLASS_NAME = 100


def header_json(header: dict[str, str], key: str, source: str) -> dict:
    """The JSON object stored under `key` in a safetensors header ({} when absent)."""
    if key not in header:
        return {}
    try:
        meta = json.loads(header[key])
    except (json.JSONDecodeError, TypeError):
        raise HifiError(f"{source}: its '{key}' metadata is not valid JSON; the file is damaged") from None
    if not isinstance(meta, dict):
        raise HifiError(f"{source}: its '{key}' metadata is a JSON {type(meta).__name__}, not an object; damaged")
    return meta


def check_common_metadata(meta: dict, source: str, needs_class: bool = True) -> None:
    """Fields every hifilight output carries: class_name, resolution, base_model (and format_version if given)."""
    if "format_version" in meta:
        version = meta["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise HifiError(f"{source}: format_version must be a positive integer, got {version!r}; damaged file")
    if needs_class or "class_name" in meta:
        name = meta.get("class_name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME or not name.isprintable():
            raise HifiError(
                f"{source}: class_name must be a word of 1-{MAX_CLASS_NAME} printable characters, got {name!r}"
            )
    if "resolution" in meta:
        res, (low, high) = meta["resolution"], RESOLUTIONS
        if not isinstance(res, int) or isinstance(res, bool) or not low <= res <= high or res % 8:
            raise HifiError(f"{source}: resolution must be a multiple of 8 in {low}..{high}, got {res!r}")
    if "base_model" in meta and (not isinstance(meta["base_model"], str) or not meta["base_model"]):
        raise HifiError(f"{source}: base_model must be a model name or folder, got {meta['base_model']!r}")


def check_float_tensor(name: str, t: torch.Tensor, dims: int, source: str) -> None:
    if not t.is_floating_point():
        raise HifiError(f"{source}: tensor '{name}' must be floating point, got {t.dtype}")
    if t.dim() != dims or 0 in t.shape:
        raise HifiError(f"{source}: tensor '{name}' must have {dims} non-empty dimensions, got shape {list(t.shape)}")
    if not torch.isfinite(t).all():
        raise HifiError(f"{source}: tensor '{name}' holds NaN or infinite values; the file is damaged, refit it")


def check_subject_tensors(tensors: dict[str, torch.Tensor], meta: dict, source: str) -> None:
    """c_s (n, d) and phi_s (n, d); c_s_t (T, n, d) and timesteps (T,) together or not at all."""
    missing = [k for k in ("c_s", "phi_s") if k not in tensors]
    if missing:
        raise HifiError(f"{source}: tensor '{missing[0]}' is missing; the file is damaged or not a subject artifact")
    c_s, phi_s = tensors["c_s"], tensors["phi_s"]
    check_float_tensor("c_s", c_s, 2, source)
    check_float_tensor("phi_s", phi_s, 2, source)
    n, d = c_s.shape
    if not 1 <= n <= MAX_TOKENS:
        raise HifiError(f"{source}: c_s has {n} token rows; a subject has 1..{MAX_TOKENS}")
    if phi_s.shape != c_s.shape:
        raise HifiError(f"{source}: phi_s has shape {list(phi_s.shape)} but c_s {list(c_s.shape)}; they must match")
    for key, value in (("num_tokens", n), ("text_hidden_size", d)):
        if key in meta and meta[key] != value:
            raise HifiError(f"{source}: metadata says {key} {meta[key]!r} but c_s has {value}; the file is damaged")
    has_t, has_steps = "c_s_t" in tensors, "timesteps" in tensors
    if has_t != has_steps:
        raise HifiError(
            f"{source}: c_s_t and timesteps come together; this file has only {'c_s_t' if has_t else 'timesteps'}"
        )
    if has_t:
        c_s_t, steps = tensors["c_s_t"], tensors["timesteps"]
        check_float_tensor("c_s_t", c_s_t, 3, source)
        if tuple(c_s_t.shape[1:]) != (n, d):
            raise HifiError(f"{source}: c_s_t has shape {list(c_s_t.shape)}; each step must match c_s {[n, d]}")
        if steps.dim() != 1 or steps.is_floating_point() or steps.dtype == torch.bool:
            raise HifiError(f"{source}: timesteps must be a 1-D integer tensor, got {steps.dtype} {list(steps.shape)}")
        if len(steps) != len(c_s_t):
            raise HifiError(f"{source}: {len(c_s_t)} step-wise embeddings but {len(steps)} timesteps; they must match")
        if len(steps) and (steps.min() < 0 or steps.max() >= MAX_TRAIN_TIMESTEPS):
            raise HifiError(f"{source}: timesteps must lie in 0..{MAX_TRAIN_TIMESTEPS - 1}, got {steps.tolist()}")


def check_token_vectors(placeholder: str, vectors: torch.Tensor, source: str) -> None:
    """A Textual Inversion file: one named (k, d) or (d,) float tensor, finite, with 1..MAX_TOKENS vectors."""
    if not placeholder.strip():
        raise HifiError(f"{source}: the token's name is empty; the file is damaged")
    if vectors.dim() not in (1, 2):
        raise HifiError(f"{source}: {placeholder} must be a (d,) or (k, d) tensor, got shape {list(vectors.shape)}")
    check_float_tensor(placeholder, vectors.reshape(-1, vectors.shape[-1]), 2, source)
    if len(vectors.reshape(-1, vectors.shape[-1])) > MAX_TOKENS:
        raise HifiError(f"{source}: {placeholder} has more vectors than a prompt can hold ({MAX_TOKENS})")
