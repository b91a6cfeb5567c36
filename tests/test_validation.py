"""Every kind of damaged subject file gets one line that names the file and the problem (hifilight.validation),
through the loader that predict, evaluate, replace, attention and the service use."""

import json

import pytest
import torch
from conftest import make_artifact
from safetensors.torch import save_file

from hifilight.errors import HifiError
from hifilight.serving import ServeSettings, SubjectServer
from hifilight.subjects import load_subject


def _good(tiny):
    art = make_artifact(tiny, steps=4)
    meta = {
        "format": "hifilight.subject",
        "format_version": 1,
        "num_tokens": 5,
        "text_hidden_size": 32,
        "resolution": 64,
        **art.metadata,
    }
    return art.tensors(), meta


def _drop(key):
    return lambda t, m: ({k: v for k, v in t.items() if k != key}, m)


def _meta(**changes):
    return lambda t, m: (t, {k: v for k, v in ({**m, **changes}).items() if v is not DROP})


def _tensor(key, fn):
    return lambda t, m: ({**t, key: fn(t[key])}, m)


DROP = object()
NAN = float("nan")
DAMAGE = {
    "missing phi_s": (_drop("phi_s"), "tensor 'phi_s' is missing"),
    "missing c_s": (_drop("c_s"), "tensor 'c_s' is missing"),
    "no format_version": (_meta(format_version=DROP), "no format_version"),
    "string format_version": (_meta(format_version="1"), "format_version must be a positive integer, got '1'"),
    "newer format_version": (_meta(format_version=99), "newer hifilight"),
    "no class_name": (_meta(class_name=DROP), "class_name must be a word"),
    "empty class_name": (_meta(class_name="  "), "class_name must be a word"),
    "list class_name": (_meta(class_name=["dog"]), "class_name must be a word"),
    "float resolution": (_meta(resolution=64.5), "resolution must be a multiple of 8"),
    "absurd resolution": (_meta(resolution=10**9), "resolution must be a multiple of 8 in 8..4096"),
    "bad base_model": (_meta(base_model=3), "base_model must be a model name"),
    "1-D c_s": (_tensor("c_s", lambda x: x.flatten()), "tensor 'c_s' must have 2 non-empty dimensions"),
    "integer c_s": (_tensor("c_s", lambda x: x.long()), "tensor 'c_s' must be floating point"),
    "NaN c_s": (_tensor("c_s", lambda x: x * NAN), "tensor 'c_s' holds NaN or infinite values"),
    "Inf c_s_t": (_tensor("c_s_t", lambda x: x / 0), "tensor 'c_s_t' holds NaN or infinite values"),
    "phi_s of another shape": (_tensor("phi_s", lambda x: x[:3]), "phi_s has shape [3, 32] but c_s [5, 32]"),
    "num_tokens lies": (_meta(num_tokens=7), "metadata says num_tokens 7 but c_s has 5"),
    "c_s_t without timesteps": (_drop("timesteps"), "c_s_t and timesteps come together"),
    "timesteps of another length": (_tensor("timesteps", lambda x: x[:2]), "4 step-wise embeddings but 2 timesteps"),
    "float timesteps": (_tensor("timesteps", lambda x: x.float()), "timesteps must be a 1-D integer tensor"),
    "negative timesteps": (_tensor("timesteps", lambda x: x - 10**4), "timesteps must lie in 0..9999"),
    "c_s_t of another width": (_tensor("c_s_t", lambda x: x[..., :16]), "c_s_t has shape [4, 5, 16]"),
}


def _write(path, tensors, meta, raw=None):
    header = {"hifilight": raw if raw is not None else json.dumps(meta)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=header)
    return path


@pytest.mark.parametrize("case", DAMAGE, ids=str)
def test_every_damaged_artifact_is_one_line_naming_the_file(case, tiny, tmp_path):
    damage, message = DAMAGE[case]
    tensors, meta = damage(*_good(tiny))
    path = _write(tmp_path / "s.safetensors", tensors, meta)
    with pytest.raises(HifiError) as err:
        load_subject(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "--model." not in text  # the file is described, not a flag of `fit`


@pytest.mark.parametrize(
    ("raw", "message"),
    [("[1, 2]", "a JSON list, not an object"), ("{oops", "not valid JSON"), ('"text"', "a JSON str, not an object")],
)
def test_metadata_that_is_not_a_json_object(raw, message, tiny, tmp_path):
    tensors, meta = _good(tiny)
    with pytest.raises(HifiError, match=message):
        load_subject(_write(tmp_path / "s.safetensors", tensors, meta, raw=raw))


def test_the_good_file_loads_and_the_service_serves_it_beside_every_damaged_one(tiny, tmp_path):
    tensors, meta = _good(tiny)
    _write(tmp_path / "good.safetensors", tensors, meta)
    assert load_subject(tmp_path / "good.safetensors").class_name == "dog"
    for k, (damage, _) in enumerate(DAMAGE.values()):
        _write(tmp_path / f"bad{k}.safetensors", *damage(*_good(tiny)))
    server = SubjectServer(ServeSettings(model="tiny", dino_model="tiny", subjects_dir=tmp_path, max_size=64)).load()
    assert list(server.subjects) == ["good"] and len(server.skipped) == len(DAMAGE)
    assert all("\n" not in reason and reason for reason in server.skipped.values())


def test_damaged_token_embeddings(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"<x>": torch.full((1, 32), NAN)}, str(path), metadata={"hifilight": json.dumps({"class_name": "x"})})
    with pytest.raises(HifiError, match="tensor '<x>' holds NaN"):
        load_subject(path)
    save_file({"<x>": torch.zeros(2, 2, 32)}, str(path), metadata={"hifilight": json.dumps({"class_name": "x"})})
    with pytest.raises(HifiError, match=r"must be a \(d,\) or \(k, d\) tensor"):
        load_subject(path)
