"""The real BentoML service as a subprocess on a loopback port: every API over HTTP, 4xx for bad input."""

import io
import json
import socket
import urllib.error
import urllib.request

import pytest
from live import live_service
from PIL import Image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(serve_subjects, tmp_path_factory):
    settings = {"HIFILIGHT_SUBJECTS_DIR": str(serve_subjects), "HIFILIGHT_MODEL": "tiny", "HIFILIGHT_MAX_SIZE": "128",
                "HIFILIGHT_MAX_WORK": "1"}  # fmt: skip
    with live_service(tmp_path_factory.mktemp("http"), settings) as url:
        yield url


def _post(url: str, path: str, body) -> tuple[int, bytes, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/{path}", data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("content-type", "")


def test_subjects_api(service):
    status, body, _ = _post(service, "subjects", {})
    out = json.loads(body)
    assert status == 200 and sorted(s["name"] for s in out["subjects"]) == ["dog", "toy"]
    assert set(out["skipped"]) == {"broken", "other", "listmeta", "nan", "legacy.pt"}  # the good ones still serve


def test_generate_png_of_the_requested_size_and_deterministic(service):
    request = {"prompt": "a {} on the beach", "subject": "dog", "seed": 7, "steps": 3, "width": 64, "height": 32}
    status, first, kind = _post(service, "generate", request)
    assert status == 200 and kind == "image/png"
    assert Image.open(io.BytesIO(first)).size == (64, 32)
    assert _post(service, "generate", request)[1] == first
    assert _post(service, "generate", request | {"seed": 8})[1] != first


def test_reference_guidance_over_http(service):
    request = {"prompt": "a {}", "subject": "dog", "steps": 5, "width": 64, "height": 64, "reference_guidance": True,
               "guide_start": 4, "guide_end": 2, "guide_inner_steps": 2}  # fmt: skip
    status, body, _ = _post(service, "generate", request)
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 64)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        ({"subject": "dog"}, 400),  # missing prompt
        ({"prompt": "a {}", "subject": "dog", "steps": 0}, 400),
        ({"prompt": "a {}", "subject": "dog", "width": 60}, 400),
        ({"prompt": "a {}", "subject": "dog", "reference_guidance": True, "guide_inner_steps": 50}, 400),  # J > 20
        ({"prompt": "a {}", "subject": "dog", "steps": 5, "reference_guidance": True, "guide_start": 9}, 400),
        ({"prompt": "a {}", "subject": "dog", "width": 4096}, 400),
        ({"prompt": "x" * 5000, "subject": "dog"}, 400),
        ({"prompt": "a {}", "subject": "cat"}, 404),
        ({"prompt": "a {}", "subject": "../../etc/passwd"}, 404),
        ({"prompt": "a beach", "subject": "dog", "steps": 2}, 400),
        ({"prompt": "a {}", "subject": "dog", "steps": 100, "width": 128, "height": 128}, 413),  # 1.6 > 1 allowed
        (b'{"prompt": "' + b"x" * 2_000_000 + b'"}', 413),  # over the 1 MB body limit
    ],
)
def test_bad_requests_get_4xx_with_a_message(service, body, status):
    code, text, _ = _post(service, "generate", body)
    assert code == status and b"error" in text and b"Traceback" not in text
    assert isinstance(json.loads(text), dict) and "error" in json.loads(text)  # one shape: {"error": ...}
