"""Learning a subject through the service: checked before any work, one fit at a time, the subject it serves equals
the one `hifilight fit` writes with the same seed and settings, and a failed or cancelled fit leaves nothing."""

import io
import threading
import time

import pytest
import torch
from conftest import EXAMPLE_SUBJECT
from PIL import Image

from hifilight.artifacts import SubjectArtifact
from hifilight.cli import main
from hifilight.serving import ServeSettings, SubjectServer
from hifilight.serving.learning import Learner, LearnError, LearnRequest

PRESET = """model:
  pretrained: tiny
  stage1_steps: 3
  stepwise_steps: 1
  stepwise_num_steps: 2
data:
  resolution: 32
  masks: none
  batch_size: 2
trainer:
  accelerator: cpu
  enable_progress_bar: false
"""


@pytest.fixture
def learner(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny_hifi.yaml").write_text(PRESET)
    server = SubjectServer(ServeSettings(model="tiny", dino_model="tiny", subjects_dir=tmp_path / "subjects")).load()
    return Learner(server, configs)


def _photos(n=3) -> list[bytes]:
    out = []
    for path in sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:n]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def test_a_learnt_subject_is_served_and_equals_what_fit_writes(learner, tmp_path):
    described = learner.learn(LearnRequest("rex", "dog", "hifi_ti", "tiny_hifi", seed=3), _photos())
    assert described["name"] == "rex" and described["kind"] == "hifi" and described["photos"] == 3
    assert learner.progress()["state"] == "done"
    image = learner.server.generate("a {} on the beach", "rex", steps=2, width=32, height=32)
    assert image.size == (32, 32)
    photos = tmp_path / "subjects" / "rex"  # the photos the service kept, as a user would pass them to fit
    cli = tmp_path / "cli.safetensors"
    args = ["fit", "--config", str(tmp_path / "configs" / "tiny_hifi.yaml"), "--seed_everything", "3"]
    args += ["--data.subject_dir", str(photos), "--data.class_name", "dog", "--out", str(cli)]
    assert main(args) == 0
    served, fitted = SubjectArtifact.load(tmp_path / "subjects" / "rex.safetensors"), SubjectArtifact.load(cli)
    assert torch.allclose(served.c_s, fitted.c_s, atol=1e-5) and torch.allclose(served.c_s_t, fitted.c_s_t, atol=1e-5)


@pytest.mark.parametrize(
    ("request_", "photos", "says"),
    [
        (LearnRequest("../x", "dog", preset="tiny_hifi"), 3, "name '../x': use 1-64 letters"),
        (LearnRequest("ok", "dog; rm", preset="tiny_hifi"), 3, "class_name"),
        (LearnRequest("ok", "dog", "dreambooth", "tiny_hifi"), 3, "method 'dreambooth': use one of"),
        (LearnRequest("ok", "dog", preset="../../etc/passwd"), 3, "preset '../../etc/passwd': use one of tiny_hifi"),
        (LearnRequest("ok", "dog", preset="tiny_hifi"), 2, "send 3-6 photos of the subject, got 2"),
    ],
)
def test_bad_requests_are_refused_before_any_work(learner, request_, photos, says, tmp_path):
    with pytest.raises(LearnError, match=says.replace("(", r"\(").replace("'", ".")):
        learner.learn(request_, _photos(photos))
    assert not (tmp_path / "subjects").exists() or not any((tmp_path / "subjects").iterdir())


def test_unreadable_and_tiny_photos_are_refused(learner):
    with pytest.raises(LearnError, match="photo 1: not a readable image"):
        learner.learn(LearnRequest("ok", "dog", preset="tiny_hifi"), [_photos(1)[0], b"junk", _photos(1)[0]])
    small = io.BytesIO()
    Image.new("RGB", (16, 16)).save(small, format="PNG")
    with pytest.raises(LearnError, match="photo 0: 16x16 px"):
        learner.learn(LearnRequest("ok", "dog", preset="tiny_hifi"), [small.getvalue(), *_photos(2)])


def test_a_cancelled_fit_leaves_nothing_and_one_fit_runs_at_a_time(learner, tmp_path):
    (tmp_path / "configs" / "tiny_hifi.yaml").write_text(PRESET.replace("stage1_steps: 3", "stage1_steps: 400"))
    errors = []

    def run():
        try:
            learner.learn(LearnRequest("slow", "dog", preset="tiny_hifi"), _photos())
        except LearnError as err:
            errors.append(str(err))

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while learner.progress().get("step", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert learner.progress()["state"] == "fitting" and learner.progress()["total"] > 0
    with pytest.raises(LearnError, match="a fit is already running") as err:
        learner.learn(LearnRequest("other", "dog", preset="tiny_hifi"), _photos())
    assert err.value.status == 409
    assert learner.cancel()
    worker.join(120)
    assert errors == ["fit of 'slow' was cancelled"]
    assert learner.progress()["state"] == "cancelled"
    assert "slow" not in learner.server.subjects and not any((tmp_path / "subjects").glob("slow*"))


def test_the_fit_task_over_http_learns_and_serves_a_subject(tmp_path):
    import base64
    import json
    import urllib.request

    from live import live_service

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny_hifi.yaml").write_text(PRESET)
    settings = {"HIFILIGHT_MODEL": "tiny", "HIFILIGHT_SUBJECTS_DIR": str(tmp_path / "subjects"),
                "HIFILIGHT_FIT_CONFIGS": str(tmp_path / "configs")}  # fmt: skip
    with live_service(tmp_path, settings) as url:

        def call(path, body=None):
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.read()

        photos = [base64.b64encode(p).decode() for p in _photos()]
        body = {"name": "rex", "class_name": "dog", "photos": photos, "preset": "tiny_hifi", "seed": 3}
        task = json.loads(call("/fit/submit", body))
        deadline = time.monotonic() + 180
        while json.loads(call(f"/fit/status?task_id={task['task_id']}"))["status"] in ("pending", "in_progress"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        described = json.loads(call(f"/fit/get?task_id={task['task_id']}"))
        assert described["name"] == "rex" and described["kind"] == "hifi"
        assert json.loads(call("/fit_progress", {}))["state"] == "done"
        image = call("/generate", {"prompt": "a {}", "subject": "rex", "steps": 2, "width": 32, "height": 32})
        assert Image.open(io.BytesIO(image)).size == (32, 32)
        bad = json.loads(call("/fit/submit", body | {"name": "../x"}))  # refused in the task: nothing made
        while json.loads(call(f"/fit/status?task_id={bad['task_id']}"))["status"] in ("pending", "in_progress"):
            time.sleep(0.2)
        progress = json.loads(call("/fit_progress", {}))
        assert progress["state"] == "failed" and "use 1-64 letters" in progress["error"]
    assert sorted(p.name for p in (tmp_path / "subjects").iterdir()) == ["rex", "rex.safetensors"]


def test_a_name_whose_photos_folder_exists_is_taken(learner, tmp_path):
    (tmp_path / "subjects" / "rex").mkdir(parents=True)  # someone's photos: a fit must not move others into it
    with pytest.raises(LearnError, match="name 'rex' is taken") as err:
        learner.learn(LearnRequest("rex", "dog", preset="tiny_hifi"), _photos())
    assert err.value.status == 409 and not any((tmp_path / "subjects" / "rex").iterdir())
