"""The web page the service serves at /ui, driven in a real headless Chromium (Debian's chromium + chromium-driver,
which .ci/run installs): it lists the subjects with their photos, generates, and shows the image the API gives for
the same request. Skipped, with the reason, where no Chromium is installed."""

import base64
import io
import json
import shutil
import urllib.request

import numpy as np
import pytest
from live import live_service
from PIL import Image

DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(DRIVER is None, reason="no chromedriver (apt-get install chromium chromium-driver)")


def _presets(folder):
    (folder / "tiny_hifi.yaml").write_text(
        "model:\n  pretrained: tiny\n  stage1_steps: 3\n  stepwise_steps: 1\n  stepwise_num_steps: 2\n"
        "data:\n  resolution: 32\n  masks: none\n  batch_size: 2\ntrainer:\n  accelerator: cpu\n"
    )
    return folder


@pytest.fixture(scope="module")
def service(serve_subjects, tmp_path_factory):
    own = tmp_path_factory.mktemp("page") / "subjects"
    shutil.copytree(serve_subjects, own)  # a copy: the page's fit adds a subject to it
    settings = {"HIFILIGHT_MODEL": "tiny", "HIFILIGHT_SUBJECTS_DIR": str(own), "HIFILIGHT_MAX_SIZE": "128",
                "HIFILIGHT_API_TOKEN": "secret",
                "HIFILIGHT_FIT_CONFIGS": str(_presets(tmp_path_factory.mktemp("configs")))}  # fmt: skip
    with live_service(own.parent, settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    chromium = shutil.which("chromium")
    if chromium:
        options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def _api_image(url: str, body: dict) -> np.ndarray:
    request = urllib.request.Request(
        f"{url}/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer secret"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def _set(driver, element_id: str, value) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(str(value))


def test_the_page_generates_the_image_the_api_gives(service, browser, tmp_path):
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{service}/ui")  # the page itself needs no token; every call it makes sends it
    _set(browser, "token", "secret")
    browser.find_element("id", "reload").click()
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: len(Select(d.find_element("id", "subject")).options) == 2)
    assert [o.get_attribute("value") for o in Select(browser.find_element("id", "subject")).options] == ["dog", "toy"]
    Select(browser.find_element("id", "subject")).select_by_value("dog")
    wait.until(lambda d: len(d.find_elements("css selector", "#photos img")) == 3)  # its 3 photos (no masks)
    for element_id, value in (("prompt", "a {} on the beach"), ("seed", 5), ("steps", 3), ("size", 32)):
        _set(browser, element_id, value)
    browser.find_element("id", "generate").click()
    wait.until(ready.presence_of_element_located(("id", "image")))
    assert browser.find_element("id", "status").text.startswith("done in ")
    encoded = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(document.getElementById("image").src).then((r) => r.arrayBuffer()).then((buffer) => {
          let text = "";
          for (const b of new Uint8Array(buffer)) text += String.fromCharCode(b);
          done(btoa(text)); });"""
    )
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
    body = {"prompt": "a {} on the beach", "subject": "dog", "seed": 5, "steps": 3, "guidance_scale": 5.0,
            "width": 32, "height": 32, "reference_guidance": False}  # fmt: skip
    api = _api_image(service, body)
    assert shown.shape == (32, 32, 3)
    assert np.abs(shown.astype(int) - api.astype(int)).max() <= 1  # docs/serve.md: within 1 level of 255
    assert len(browser.find_elements("css selector", "#gallery img")) == 1
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_the_page_shows_the_services_error_in_one_line(service, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{service}/ui")
    _set(browser, "token", "secret")
    browser.find_element("id", "reload").click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements("css selector", "#subject option")) == 2)
    _set(browser, "prompt", "no placeholder and no class word")
    _set(browser, "steps", 2)
    _set(browser, "size", 32)
    browser.find_element("id", "generate").click()
    wait.until(lambda d: d.find_element("id", "error").text)
    error = browser.find_element("id", "error").text
    assert "has no subject placeholder" in error and "\n" not in error


def test_a_subject_learnt_from_the_page_is_served(service, browser):
    from conftest import EXAMPLE_SUBJECT
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{service}/ui")
    _set(browser, "token", "secret")
    browser.find_element("id", "reload").click()
    wait = WebDriverWait(browser, 180)
    wait.until(lambda d: len(Select(d.find_element("id", "fit_preset")).options) == 1)
    photos = [str(p) for p in sorted(EXAMPLE_SUBJECT.glob("*.jpg"))[:3]]
    browser.find_element("id", "fit_photos").send_keys("\n".join(photos))
    _set(browser, "fit_name", "rex")
    _set(browser, "fit_class", "dog")
    browser.find_element("id", "fit_start").click()
    wait.until(lambda d: d.find_element("id", "fit_status").text.startswith("done"))
    wait.until(lambda d: "rex" in [o.get_attribute("value") for o in Select(d.find_element("id", "subject")).options])
    assert Select(browser.find_element("id", "subject")).first_selected_option.get_attribute("value") == "rex"
    body = {"prompt": "a {} on the beach", "subject": "rex", "seed": 1, "steps": 2, "guidance_scale": 5.0,
            "width": 32, "height": 32}  # fmt: skip
    assert _api_image(service, body).shape == (32, 32, 3)  # the next generate serves it
