"""The DreamBench (DreamBooth dataset) layout: `<dataset>/<subject>/*.jpg` plus `prompts_and_classes.txt`.

The classes come from that file's "subject_name,class" table and the prompts from its two `prompt_list` blocks
(objects, live subjects), whose entries read 'a {0} {1} in the jungle'.format(unique_token, class_token): {0} is the
identifier, {1} the class word. Without that file, `subjects.csv` (columns subject_name,class[,live]) or one
`--class_name` for every subject can give the classes, and the prompts are the DreamBench lists below.
Live subjects are the cats and dogs (DreamBooth's 9 live subjects), unless `subjects.csv` says otherwise.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from hifilight.data.images import list_images
from hifilight.errors import HifiError

_SCENES = ["in the jungle", "in the snow", "on the beach", "on a cobblestone street", "on top of pink fabric",
           "on top of a wooden floor", "with a city in the background", "with a mountain in the background",
           "with a blue house in the background", "on top of a purple rug in a forest"]  # fmt: skip
_OBJECT = ["with a wheat field in the background", "with a tree and autumn leaves in the background",
           "with the Eiffel Tower in the background", "floating on top of water", "floating in an ocean of milk",
           "on top of green grass with sunflowers around it", "on top of a mirror",
           "on top of the sidewalk in a crowded street", "on top of a dirt road", "on top of a white rug"]  # fmt: skip
_LIVE = ["wearing a red hat", "wearing a santa hat", "wearing a rainbow scarf", "wearing a black top hat and a monocle",
         "in a chef outfit", "in a firefighter outfit", "in a police outfit", "wearing pink glasses",
         "wearing a yellow shirt", "in a purple wizard outfit"]  # fmt: skip
_PROPERTIES = ["a red {0} {1}", "a purple {0} {1}", "a shiny {0} {1}", "a wet {0} {1}", "a cube shaped {0} {1}"]
OBJECT_PROMPTS = [f"a {{0}} {{1}} {s}" for s in _SCENES + _OBJECT] + _PROPERTIES
LIVE_PROMPTS = [f"a {{0}} {{1}} {s}" for s in _SCENES + _LIVE] + _PROPERTIES
LIVE_CLASSES = ("cat", "dog")
PROMPT_FILE, CSV_FILE = "prompts_and_classes.txt", "subjects.csv"


@dataclass(frozen=True)
class BenchSubject:
    name: str
    class_name: str
    folder: Path
    live: bool
    prompts: tuple[str, ...]  # templates with {0} = identifier, {1} = class word


def render(template: str, identifier: str, class_name: str) -> str:
    """A prompt template with the identifier (may be empty) and the class word, single-spaced."""
    return re.sub(r"\s+", " ", template.format(identifier, class_name)).strip()


def parse_prompt_file(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(classes, object prompts, live prompts) from prompts_and_classes.txt."""
    classes = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] and parts[0] != "subject_name" and "{" not in line:
            classes[parts[0]] = parts[1]
    blocks = re.findall(r"prompt_list\s*=\s*\[(.*?)\]", text, flags=re.S)
    lists = [re.findall(r"'([^']*)'\.format", block) for block in blocks]
    if len(lists) < 2 or not classes:
        raise HifiError(f"{PROMPT_FILE}: expected a 'subject_name,class' table and two prompt_list blocks")
    return classes, lists[0], lists[1]


def _read_csv(path: Path) -> tuple[dict[str, str], dict[str, bool]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"subject_name", "class"} <= set(rows[0]):
        raise HifiError(f"{path}: needs a header 'subject_name,class' (optional ',live' with true/false)")
    live = {r["subject_name"]: r["live"].strip().lower() in ("1", "true", "yes") for r in rows if r.get("live")}
    return {r["subject_name"]: r["class"].strip() for r in rows}, live


def load_dreambench(
    dataset: Path, subjects: list[str] | None = None, class_name: str | None = None
) -> list[BenchSubject]:
    """The subjects to evaluate (all folders with images, or `subjects`), with classes and prompt lists."""
    dataset = Path(dataset).expanduser()
    if not dataset.is_dir():
        raise HifiError(f"--dataset {dataset}: no such folder; pass a DreamBench-layout folder (<subject>/<NN>.jpg)")
    live: dict[str, bool] = {}
    object_prompts, live_prompts = OBJECT_PROMPTS, LIVE_PROMPTS
    if (dataset / PROMPT_FILE).is_file():
        classes, object_prompts, live_prompts = parse_prompt_file((dataset / PROMPT_FILE).read_text())
    elif (dataset / CSV_FILE).is_file():
        classes, live = _read_csv(dataset / CSV_FILE)
    elif class_name:
        classes = {}
    else:
        raise HifiError(
            f"--dataset {dataset}: no {PROMPT_FILE} or {CSV_FILE} to give the subjects' classes; add one "
            "(subjects.csv: 'subject_name,class[,live]') or pass --class_name for all subjects"
        )
    folders = sorted(p.name for p in dataset.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = subjects or folders
    out = []
    for name in names:
        if name not in folders:
            raise HifiError(f"--subjects {name}: no folder {dataset / name}")
        cls = class_name or classes.get(name)
        if cls is None:
            raise HifiError(f"subject {name}: no class in {PROMPT_FILE}/{CSV_FILE}; add it or pass --class_name")
        list_images(dataset / name, flag=f"subject {name}")  # fails with a clear line when there are none
        is_live = live.get(name, cls in LIVE_CLASSES)
        out.append(BenchSubject(name, cls, dataset / name, is_live, tuple(live_prompts if is_live else object_prompts)))
    return out
