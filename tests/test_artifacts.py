import json

import pytest
import torch
from safetensors.torch import save_file

from hifilight.artifacts import SubjectArtifact
from hifilight.errors import HifiError


def _artifact():
    return SubjectArtifact(
        c_s=torch.randn(5, 32),
        phi_s=torch.randn(5, 32),
        metadata={"base_model": "tiny", "class_name": "dog", "resolution": 64},
    )


def test_round_trip(tmp_path):
    art = _artifact()
    art.c_s_t, art.timesteps = torch.randn(10, 5, 32), torch.arange(10)
    path = art.save(tmp_path / "s.safetensors")
    back = SubjectArtifact.load(path)
    assert torch.equal(back.c_s, art.c_s) and torch.equal(back.phi_s, art.phi_s)
    assert torch.equal(back.c_s_t, art.c_s_t) and torch.equal(back.timesteps, art.timesteps)
    assert back.class_name == "dog" and back.metadata["num_tokens"] == 5
    assert back.metadata["text_hidden_size"] == 32 and "hifilight_version" in back.metadata
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(HifiError, match="already exists"):
        _artifact().save(path)
    assert path.read_bytes() == b"precious"
    _artifact().save(path, overwrite=True)
    assert SubjectArtifact.load(path).class_name == "dog"


def test_mismatches_are_refused():
    art = _artifact()
    art.check_compatible("tiny", 32, art.phi_s.clone())
    with pytest.raises(HifiError, match="hidden size 32 .* has 1024"):
        art.check_compatible("stabilityai/stable-diffusion-2-1", 1024, torch.zeros(5, 1024))
    with pytest.raises(HifiError, match="text encoder differs"):
        art.check_compatible("other", 32, art.phi_s + 1.0)


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(HifiError, match="no such file"):
        SubjectArtifact.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(HifiError, match="not a readable safetensors"):
        SubjectArtifact.load(tmp_path / "junk.safetensors")
    save_file({"emb": torch.zeros(1, 4)}, str(tmp_path / "ti.safetensors"), metadata={"x": json.dumps({})})
    with pytest.raises(HifiError, match="not a hifilight subject artifact"):
        SubjectArtifact.load(tmp_path / "ti.safetensors")


def test_written_files_follow_the_umask(tmp_path):
    import os

    from hifilight.io import write_atomic

    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the group and others, as open() would make it
