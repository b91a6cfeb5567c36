"""Prompt and caption templates: where the subject goes in a text.

A template marks the subject with `{}` or `<subject>`. HiFi Tuner's subject embedding c_s is not a word: it is
spliced into the last n rows of the encoded text (Sec. 3.2), so in the text itself the placeholder becomes the
subject's class word ("a photo of a {}" -> "a photo of a dog"). A placeholder directly followed by the class word
is simply dropped ("a {} dog" -> "a dog"). A template with no placeholder is used as it is if it names the class.
"""

from __future__ import annotations

import re

from hifilight.errors import HifiError, shown

_PLACEHOLDER_RE = re.compile(r"\{\}|<subject>")


def has_placeholder(template: str) -> bool:
    return bool(_PLACEHOLDER_RE.search(template))


def render(template: str, class_name: str, flag: str = "--prompts") -> str:
    """Fill the subject placeholder(s) of `template` with `class_name`.

    Raises HifiError when the template has no placeholder and does not mention the class word either: the user
    would get an image without the subject and not know why.
    """
    if not has_placeholder(template):
        if re.search(rf"\b{re.escape(class_name)}\b", template, flags=re.IGNORECASE):
            return template
        raise HifiError(
            f"{flag}: {shown(template)} has no subject placeholder and does not mention the class {class_name!r}; "
            f"write e.g. 'a photo of a {{}} on the beach' ({{}} or <subject> marks the subject)"
        )
    followed = re.compile(rf"(?:\{{\}}|<subject>)\s+(?={re.escape(class_name)}\b)", flags=re.IGNORECASE)
    text = followed.sub("", template)
    text = _PLACEHOLDER_RE.sub(class_name, text)
    return re.sub(r"\s+", " ", text).strip()
