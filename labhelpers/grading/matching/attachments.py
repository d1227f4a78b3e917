"""Images pasted into markdown cells: kept with their text, pooled when parts are joined, never left dangling.

A pasted image lives in the cell's ``attachments`` ({name: {mime type: base64 data}}) and its text refers to it as
``![image.png](attachment:image.png)`` (JupyterLab names every pasted image ``image.png``). nbconvert embeds it in the
feedback page from there, and raises ``InvalidNotebook: missing attachment: image.png`` for a name the cell does not
have (nbconvert 7 ``filters/markdown_mistune.py``), which fails the whole page (``nbgrader generate_feedback failed``).
So the attachments travel with the text; the parts of a joined answer pool theirs, a name used by two parts for
different images being renamed in the second; and a name the text uses but the cell lacks gets a small picture that
says the image was not in the notebook.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"attachment:([^\s()<>\[\]\"']+)")
"""A reference to an attachment, as nbconvert reads it from an image's URL (``attachment:`` then the name)."""
_MISSING_PICTURE = (
    "<svg xmlns='http://www.w3.org/2000/svg' width='420' height='60'>"
    "<rect x='1' y='1' width='418' height='58' fill='#fff8c5' stroke='#9a6700'/>"
    "<text x='12' y='36' font-family='sans-serif' font-size='14' fill='#4d2d00'>{}</text></svg>"
)


def read_attachments(value: object) -> dict[str, dict[str, str]]:
    """Return a cell's attachments as nbformat allows them, leaving out any entry that is not an image bundle.

    Args:
        value: the cell's ``attachments`` as read from the file (any object).

    Returns:
        {name: {mime type: base64 data}}, each bundle with at least one entry (nbconvert fails on an empty one).
    """
    if not isinstance(value, Mapping):
        return {}
    found = {}
    for name, bundle in value.items():
        if not isinstance(name, str) or not name or not isinstance(bundle, Mapping):
            continue
        data = {}
        for mime, content in bundle.items():
            if isinstance(content, list) and all(isinstance(line, str) for line in content):
                content = "".join(content)
            if isinstance(mime, str) and isinstance(content, str):
                data[mime] = content
        if data:
            found[name] = data
    return found


def pooled(parts: list[tuple[str, dict[str, dict[str, str]]]]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Pool the attachments of the parts of one answer, renaming a name that two parts use for different images.

    Args:
        parts: (text, attachments) of each part, in order.

    Returns:
        (each part's text, references to renamed attachments rewritten; the pooled attachments).
    """
    texts, pool = [], {}
    for text, attachments in parts:
        for name, bundle in attachments.items():
            if pool.get(name, bundle) == bundle:
                pool[name] = bundle
                continue
            stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
            number = 2
            while f"{stem}-{number}{dot}{suffix}" in pool:
                number += 1
            renamed = f"{stem}-{number}{dot}{suffix}"
            pool[renamed] = bundle
            text = re.sub(rf"attachment:{re.escape(name)}(?=[\s()<>\[\]\"']|$)", f"attachment:{renamed}", text)
        texts.append(text)
    return texts, pool


def completed(text: str, attachments: dict[str, dict[str, str]]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Return the attachments a markdown text needs: its own, and a picture saying so for each one it lacks.

    Args:
        text: the cell's markdown.
        attachments: the cell's attachments.

    Returns:
        (the attachments to give the cell; the names the text refers to but the cell lacked, in order).
    """
    missing = [name for name in dict.fromkeys(_REFERENCE.findall(text)) if name not in attachments]
    if not missing:
        return attachments, []
    completed_ = dict(attachments)
    for name in missing:
        words = html.escape(f"The image {name} was here: it is not in the submitted notebook.")
        completed_[name] = {"image/svg+xml": base64.b64encode(_MISSING_PICTURE.format(words).encode()).decode()}
    return completed_, missing
