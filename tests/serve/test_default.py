"""A fresh clone's service: `make serve` with no settings serves ToySD and the embedded ToyWorld subjects, and the
curl command docs/serve.md shows first returns a ToySD image of one of them."""

import io
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
from live import live_service
from PIL import Image

from hifilight.serving import ServeSettings, SubjectServer

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedded_subjects_all_serve_on_toysd():
    server = SubjectServer(ServeSettings(subjects_dir=ROOT / "serve" / "subjects")).load()
    # settings built directly pick ToySD's image encoder as the service's own (from the environment) do
    assert server.settings.model == "toysd" and server.settings.dino_model == "toyworld"
    assert ServeSettings.from_env({}).dino_model == "toyworld"  # what the service itself uses with ToySD
    assert not server.skipped, server.skipped
    kinds = {d["name"]: d["kind"] for d in server.describe()}
    assert kinds == {"star": "hifi", "star_ti": "textual_inversion", "star_lora": "lora"}
    assert all(d["reference_guidance"] and d["photos"] == 5 for d in server.describe())
    for name in kinds:
        image = np.asarray(server.generate("a {} on the grass", name, seed=0, steps=10, width=64, height=64))
        red, green, blue = image.reshape(-1, 3).mean(0)
        assert image.shape == (64, 64, 3) and green > red + 20 and green > blue + 20, (name, red, green, blue)


def test_the_first_curl_of_the_serving_docs_returns_a_toysd_image(tmp_path):
    doc = (ROOT / "docs" / "serve.md").read_text()
    body = json.loads(re.search(r"-d '(\{.*?\})'", doc, flags=re.S).group(1))
    assert body["subject"] == "star"
    with live_service(tmp_path, {}, cwd=ROOT, inherit=False) as url:  # a fresh clone's defaults
        request = urllib.request.Request(
            f"{url}/generate", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            image = Image.open(io.BytesIO(response.read()))
    assert image.size == (64, 64) and np.asarray(image).mean() > 150  # ToySD's snow (random weights give grey)
