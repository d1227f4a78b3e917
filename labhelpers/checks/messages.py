"""How a check's messages read: the diagnosis and the concept in words, then expected/got, the tolerance last.

`verdict` composes a message in that order; the lessons say, in words, what a known exception in student code usually
means. A message teaches the idea and says where to read about it (the paper's section, PEFT, the exercise's text); it
never hands over a line of the model answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def sentence(text: str) -> str:
    """Start text with a capital letter when it starts with a plain word (never an identifier such as lora_A)."""
    first = text.split(" ", 1)[0].rstrip(":;,.").replace("-", "").replace("'", "")
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text


def _finished(text: str) -> str:
    text = sentence(text.strip())
    return text if not text or text.endswith((".", "?", "!", ".)", "?)")) else text + "."


def sentences(*texts: str) -> str:
    """Join texts as finished sentences (capitalised, ending in a full stop), leaving out empty ones."""
    return " ".join(text for text in map(_finished, texts) if text)


def verdict(diagnosis: str, evidence: str = "", tolerance_note: str = "") -> str:
    """Compose a check's message in the lab's order: diagnosis and concept in words, then expected/got, tolerance last.

    Args:
        diagnosis: the mistake recognised, the concept behind it and where to read about it.
        evidence: what was expected and what was got (shapes, values, where they differ).
        tolerance_note: the allowed difference, when values were compared (see tolerance_text).

    Returns:
        The message, each part a finished sentence.
    """
    return sentences(diagnosis, evidence, tolerance_note)


def tolerance_text(atol: float, rtol: float, dtype: str) -> str:
    """Return the sentence that ends a message comparing tensors: the allowed difference per element."""
    return f"Tolerance: |got − expected| ≤ {atol:g}·max(1, max|expected|) + {rtol:g}·|expected| per element ({dtype})"


def shape_text(shape: Sequence[int | None]) -> str:
    """Return '(7, 5)', '(7,)' or '(any, 5)'."""
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _broadcast(actual: Sequence[int], expected: Sequence[int]) -> bool:
    """Tell whether a wrong shape looks like broadcasting's result: at least the expected size in every dimension."""
    if len(actual) < len(expected):
        return False
    tail = actual[len(actual) - len(expected) :]
    return all(a >= e for a, e in zip(tail, expected, strict=True)) and tuple(actual) != tuple(expected)


def shape_diagnosis(got: Sequence[int], expected: Sequence[int]) -> str:
    """Return the likely mistake behind a wrong shape: broadcasting, a transposed result, or a reduction."""
    if _broadcast(got, expected):
        return (
            "a shape larger than expected usually comes from broadcasting: two tensors of different shapes combined "
            "element by element, e.g. (n, 1) with (1, n), give (n, n). Write down the shape of each tensor you combine"
        )
    if len(got) == len(expected) == 2 and list(got) == list(expected)[::-1]:
        return "the result is transposed: keep the layout of the inputs, one row per output feature"
    return (
        "the shape shows a reduction over another axis, or an axis dropped: a reduction removes the axis it reduces "
        "unless asked to keep it (keepdim)"
    )


def _kind_text(facts: Mapping[str, Any]) -> str:
    kind = facts.get("kind")
    if kind in ("tensor", "parameter"):
        return f"a tensor of shape {tuple(facts['shape'])} and dtype {facts['dtype']}"
    if kind == "none":
        return "None"
    if kind == "sequence":
        return f"a {facts['type']} of length {facts['length']}"
    return f"a {facts.get('type', kind)}"


def describe_facts(facts: Mapping[str, Any] | None) -> str:
    """Name what a probe recorded, e.g. 'a tensor of shape (7, 1) and dtype float32', 'None', 'a list of length 3'."""
    return "nothing" if facts is None else _kind_text(facts)


@dataclass(frozen=True)
class Lesson:
    """What a known exception in student code usually means, in words, and where to read about it.

    Attributes:
        pattern: a regular expression searched in "<exception type>: <message>".
        text: the explanation the failure message adds after the exception.
        where: a regular expression the description of the failing call must match (empty: any call).
    """

    pattern: str
    text: str
    where: str = ""

    def applies(self, what: str, error: str) -> bool:
        """Tell whether this lesson explains `error` ("<type>: <message>") raised by the call described by `what`."""
        return bool(re.search(self.pattern, error)) and bool(re.search(self.where, what))


EXCEPTION_LESSONS = (
    Lesson(
        r"same dtype|scalar type|Found dtype",
        "Tensors of two dtypes met in one operation: every tensor your code creates must be in the dtype of the "
        "tensors it is combined with. The checks run in float64 as well as float32, and PyTorch creates float32 "
        "tensors unless told otherwise.",
    ),
    Lesson(
        r"same device",
        "Tensors on two devices met in one operation: create every new tensor on the device of the tensors it is "
        "combined with.",
    ),
    Lesson(
        r"shapes cannot be multiplied",
        "A matrix product got factors whose inner sizes differ: in P @ Q the last axis of P must have the size of the "
        "first axis of Q. Write the shape of each factor next to the line.",
    ),
)
"""Lessons for exceptions any exercise can raise; a check puts its own, more specific ones first."""


def lesson_for(what: str, error: str, lessons: Sequence[Lesson] = ()) -> str:
    """Return the text of the first lesson (the check's own, then EXCEPTION_LESSONS) that explains error, or ""."""
    return next((lesson.text for lesson in (*lessons, *EXCEPTION_LESSONS) if lesson.applies(what, error)), "")
