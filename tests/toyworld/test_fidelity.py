"""The exact measures: prompt parsing, and the judge's scores on renders whose truth is known."""

import numpy as np
import pytest
from PIL import Image

from hifilight.toyworld.dataset import PROMPTS, SUBJECTS
from hifilight.toyworld.fidelity import PromptTarget, ToyJudge, prompt_target
from hifilight.toyworld.scenes import BACKGROUNDS, ToyObject, random_scene, render

# a subject the classifier reads without error on 12 renders x 5 backgrounds (hearts' shape is its weakest reading:
# the ablation's "ground truth renders" row gives each measure's ceiling)
SUBJECT = SUBJECTS["blue_star_yellow_dots"]
EPS = 1e-6


def test_prompt_targets_of_every_toyworld_prompt():
    targets = [prompt_target(p.format("sks", "star")) for p in PROMPTS]
    assert targets[: len(BACKGROUNDS)] == [PromptTarget(background=b) for b in BACKGROUNDS]
    assert targets[len(BACKGROUNDS) :] == [PromptTarget(color="red"), PromptTarget(color="purple")]
    assert prompt_target("a {0} {1} in the snow") == PromptTarget(background="snow")
    with pytest.raises(ValueError, match="no ToyWorld background"):
        prompt_target("a photo of a star")


@pytest.fixture(scope="module")
def judge():
    return ToyJudge()


def _images(obj, background, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(render(random_scene(rng, obj, background))[0]) for _ in range(n)]


def _sources(judge, obj):
    return judge.encoder.encode_images(_images(obj, None, 5, seed=1))


def test_true_renders_score_high_and_wrong_ones_low(judge):
    sources = _sources(judge, SUBJECT)
    right = judge.score(_images(SUBJECT, "snow"), SUBJECT, "a {0} {1} in the snow", sources)
    assert right["identity"] >= 5 / 6 - EPS and right["attributes"] >= 0.95 and right["prompt"] == 1.0
    assert right["confidence"] > 0.8
    wrong_bg = judge.score(_images(SUBJECT, "grass"), SUBJECT, "a {0} {1} in the snow", sources)
    assert wrong_bg["prompt"] == 0.0 and wrong_bg["identity"] >= 5 / 6 - EPS
    other = ToyObject("square", "green", "striped", "red")
    wrong_obj = judge.score(_images(other, "snow"), SUBJECT, "a {0} {1} in the snow", sources)
    assert wrong_obj["identity"] == 0.0 and wrong_obj["attributes"] <= 0.25
    assert wrong_obj["toydino"] < right["toydino"] and wrong_obj["confidence"] < 0.3


def test_recolour_prompt_checks_the_new_colour_and_leaves_it_out_of_identity(judge):
    sources = _sources(judge, SUBJECT)
    recoloured = ToyObject(SUBJECT.shape, "purple", SUBJECT.pattern, SUBJECT.pattern_color)
    scores = judge.score(_images(recoloured, "wood"), SUBJECT, "a purple {0} {1}", sources)
    assert scores["prompt"] == 1.0 and scores["identity"] >= 5 / 6 - EPS
    unchanged = judge.score(_images(SUBJECT, "wood"), SUBJECT, "a purple {0} {1}", sources)
    assert unchanged["prompt"] == 0.0
