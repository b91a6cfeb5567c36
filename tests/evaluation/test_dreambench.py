"""DreamBench layout: class table and prompt lists from prompts_and_classes.txt, subjects.csv, --class_name."""

import pytest
from conftest import write_image

from hifilight.errors import HifiError
from hifilight.evaluation.dreambench import LIVE_PROMPTS, OBJECT_PROMPTS, load_dreambench, parse_prompt_file, render

PROMPT_FILE = """Classes

subject_name,class
can,can
dog,dog

Prompts

Object Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a red {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts

prompt_list = [
'a {0} {1} wearing a red hat'.format(unique_token, class_token)
]
"""


def _dataset(tmp_path, names=("can", "dog")):
    for name in names:
        (tmp_path / name).mkdir()
        write_image(tmp_path / name / "00.jpg")
    return tmp_path


def test_prompt_file_gives_classes_and_the_two_lists(tmp_path):
    classes, objects, live = parse_prompt_file(PROMPT_FILE)
    assert classes == {"can": "can", "dog": "dog"}
    assert objects == ["a {0} {1} in the jungle", "a red {0} {1}"] and live == ["a {0} {1} wearing a red hat"]
    (_dataset(tmp_path) / "prompts_and_classes.txt").write_text(PROMPT_FILE)
    can, dog = load_dreambench(tmp_path)
    assert (can.live, dog.live) == (False, True)
    assert can.prompts == tuple(objects) and dog.prompts == tuple(live)
    assert render(can.prompts[1], "", "can") == "a red can" and render(dog.prompts[0], "sks", "dog").startswith("a sks")


def test_builtin_lists_follow_dreambench():
    assert len(OBJECT_PROMPTS) == len(LIVE_PROMPTS) == 25
    assert OBJECT_PROMPTS[:10] == LIVE_PROMPTS[:10] and OBJECT_PROMPTS[20:] == LIVE_PROMPTS[20:]


def test_csv_and_class_name_fallbacks(tmp_path):
    _dataset(tmp_path)
    with pytest.raises(HifiError, match="subjects.csv"):
        load_dreambench(tmp_path)
    assert [s.class_name for s in load_dreambench(tmp_path, class_name="toy")] == ["toy", "toy"]
    (tmp_path / "subjects.csv").write_text("subject_name,class,live\ncan,can,false\ndog,robot dog,true\n")
    can, dog = load_dreambench(tmp_path)
    assert dog.class_name == "robot dog" and dog.live and len(dog.prompts) == 25 and not can.live


def test_bad_subjects(tmp_path):
    _dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HifiError, match="no images found"):
        load_dreambench(tmp_path, ["empty"], class_name="x")
    with pytest.raises(HifiError, match="no folder"):
        load_dreambench(tmp_path, ["cat"], class_name="x")
    with pytest.raises(HifiError, match="no such folder"):
        load_dreambench(tmp_path / "nope")
