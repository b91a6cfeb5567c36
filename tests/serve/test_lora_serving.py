"""Many LoRA subjects on one base model in the service: each request gets its own adapter alone, other subjects
none, and every image equals the one its subject gives on a model loaded for it alone."""

import numpy as np
import pytest
from conftest import EXAMPLE_SUBJECT, make_artifact

from hifilight.cli import main
from hifilight.data.images import to_pil
from hifilight.errors import HifiError
from hifilight.models import load_components
from hifilight.sampling.generate import generate, make_jobs
from hifilight.serving import ServeSettings, SubjectServer
from hifilight.subjects import load_subject

pytestmark = pytest.mark.numerical

pytest.importorskip("peft")


def _fit_lora(out, logs, learning_rate):
    args = ["fit", "--method", "lora", "--data.subject_dir", str(EXAMPLE_SUBJECT), "--data.class_name", "dog"]
    args += ["--data.resolution", "32", "--model.max_steps", "2", "--model.learning_rate", learning_rate]
    args += ["--model.rank", "2", "--model.num_class_images", "1", "--model.class_steps", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(logs), "--out", str(out)]
    assert main(args) == 0


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_subjects")
    subjects = tmp / "subjects"
    subjects.mkdir()
    _fit_lora(subjects / "rex.safetensors", tmp / "logs_a", "0.05")
    _fit_lora(subjects / "my-dog.v2.safetensors", tmp / "logs_b", "0.2")  # dots and dashes in the name
    make_artifact(tiny, steps=4).save(subjects / "hifi.safetensors")
    return subjects


def _alone(path, seed):
    """The image of a subject on a freshly loaded base model with only that subject."""
    subject, comps = load_subject(path), load_components("tiny")
    subject.prepare(comps)
    jobs = make_jobs(["a {} on the beach"], subject.word, seed, 1)
    return np.asarray(to_pil(generate(comps, subject.artifact, jobs, 3, 7.5, (32, 32), progress=False)[0]))


def _served(server, name, seed):
    image = server.generate("a {} on the beach", name, seed=seed, steps=3, width=32, height=32)
    return np.asarray(image)


def test_each_lora_subject_gets_its_own_adapter_and_others_none(folder):
    server = SubjectServer(ServeSettings(model="tiny", dino_model="tiny", subjects_dir=folder, max_size=128)).load()
    kinds = {d["name"]: d["kind"] for d in server.describe()}
    assert kinds == {"rex": "lora", "my-dog.v2": "lora", "hifi": "hifi"}
    assert server.subjects["rex"].comps is server.subjects["my-dog.v2"].comps  # one base model for all
    rex, other, hifi = (_served(server, name, 1) for name in ("rex", "my-dog.v2", "hifi"))
    assert np.abs(rex.astype(int) - _alone(folder / "rex.safetensors", 1)).max() <= 1
    assert np.abs(other.astype(int) - _alone(folder / "my-dog.v2.safetensors", 1)).max() <= 1
    assert np.abs(hifi.astype(int) - _alone(folder / "hifi.safetensors", 1)).max() <= 1  # no adapter left on
    assert not np.array_equal(rex, other)
    assert np.array_equal(_served(server, "rex", 1), rex)  # switching back gives the same image


def test_lora_subjects_need_the_torch_backend(folder):
    server = SubjectServer(ServeSettings(model="tiny", dino_model="tiny", subjects_dir=folder))
    server.settings = ServeSettings(model="tiny", dino_model="tiny", subjects_dir=folder, backend="onnx")
    server.comps = load_components("tiny")
    with pytest.raises(HifiError, match="LoRA subjects need the torch backend"):
        server._load_lora(folder / "rex.safetensors", load_subject(folder / "rex.safetensors"))
