"""The steps of cell matching on a five-cell release: reading sources, anchoring, continuing, choosing, the notes."""

from __future__ import annotations

import nbformat
import pytest

from labhelpers.grading.matching import tidy
from labhelpers.grading.matching.anchors import anchor_chain
from labhelpers.grading.matching.answers import continues
from labhelpers.grading.matching.notes import Notes
from labhelpers.grading.matching.release import read_release
from labhelpers.grading.matching.submission import SubmittedPart, read_parts
from labhelpers.grading.matching.text import defined_names, normalise, parses, stub_names

STUB = 'def scale(x):\n    """Return x times two."""\n    raise NotImplementedError()'
ANSWER = 'def scale(x):\n    """Return x times two."""\n    y = 2 * x\n    return y'


def _cell(cell_type: str, source: str, grade_id: str, solution: bool = False, grade: bool = False):
    make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": not solution}
    return make(source, metadata={"nbgrader": meta}, id=grade_id.replace("_", "-"))


@pytest.fixture
def release():
    """Heading, question, a code answer, its test, a written answer."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        _cell("markdown", "# Scaling", "heading"),
        _cell("markdown", "Write `scale`.", "question"),
        _cell("code", STUB, "scale", solution=True),
        _cell("code", "assert scale(1) == 2", "scale_test", grade=True),
        _cell("markdown", "YOUR ANSWER HERE", "why", solution=True),
    ]
    return notebook


def _part(source: str, grade_id: str | None = None, cell_type: str = "markdown") -> SubmittedPart:
    return SubmittedPart(cell_type, source, normalise(source), grade_id, None)


NORMALISED = [
    ("windows line ends and trailing spaces", "a  \r\nb\r\n", "a\nb"),
    ("blank lines around", "\n\n  x\n\n", "  x"),
    ("old Mac line ends", "a\rb", "a\nb"),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in NORMALISED], ids=[c[0] for c in NORMALISED])
def test_normalise_makes_editors_sources_comparable(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("%matplotlib inline\n!ls\nx = 1", True), ("  x = 1", False), ("def f(:", False), ("a = '\0'", False)],
    ids=["magics", "indented", "syntax_error", "null_byte"],
)
def test_parses_counts_magics_as_statements_and_never_raises(text, expected):
    assert parses(text) is expected


def test_stub_names_are_the_definitions_without_assignments():
    text = "def f():\n    inner = 1\nasync def g(): pass\nclass C: pass\nx: int = 3\ny = 2\nz == 1"
    assert defined_names(text) == {"f", "g", "C", "x", "y"}
    assert stub_names(text) == {"f", "g", "C"}


def test_release_cells_say_what_they_are(release):
    cells = read_release(release)
    assert [cell.kind for cell in cells] == ["instructor cell", "instructor cell", "answer", "test cell", "answer"]
    assert cells[2].names == frozenset({"scale"})
    assert cells[2].first_line == "def scale(x):"


def test_read_parts_skips_what_is_not_a_cell_and_ignores_foreign_grade_ids():
    submitted = {"cells": [3, {"cell_type": "odd", "source": ["a", "b"], "metadata": {"nbgrader": {"grade_id": "x"}}}]}
    parts, unreadable = read_parts(submitted, {"scale"})
    assert unreadable == 1
    assert [(part.cell_type, part.source, part.grade_id) for part in parts] == [("raw", "ab", None)]


def test_anchor_chain_keeps_the_order_preserving_matches(release):
    cells = read_release(release)
    # The test cell pasted above everything, then the notebook in order with the question edited (kept by grade_id).
    parts = [
        _part("assert scale(1) == 2", cell_type="code"),
        _part("# Scaling"),
        _part("Write `scale` please.", "question"),
        _part(ANSWER, "scale", "code"),
        _part("assert scale(1) == 2", cell_type="code"),
    ]
    assert anchor_chain(parts, cells) == {1: 0, 2: 1, 4: 3}


@pytest.mark.parametrize(
    ("answer", "so_far", "part", "expected"),
    [
        ("scale", "def scale(x):", _part("    return 2 * x", cell_type="code"), True),
        ("scale", ANSWER, _part("print(scale(3))", cell_type="code"), False),
        ("scale", ANSWER + "\nprint(scale(2))", _part("    print('checking')", cell_type="code"), False),
        ("scale", ANSWER, _part("def scale(x):\n    return x", cell_type="code"), False),
        ("why", "Because.", _part("(see my plot)"), True),
        ("why", "Because.", _part("x = 1", cell_type="code"), False),
    ],
    ids=["indented_body", "stands_alone", "breaks_the_answer", "redefines_the_stub", "markdown_note", "code_note"],
)
def test_continues_only_what_cannot_stand_alone(release, answer, so_far, part, expected):
    cell = next(cell for cell in read_release(release) if cell.grade_id == answer)
    assert continues(cell, so_far, part) is expected


def test_notes_come_in_a_fixed_order_and_copies_add_up(release):
    cells = read_release(release)
    notes = Notes()
    notes.add("missing", "answer why not found, graded as unanswered")
    notes.add_names("moved", "cell {} moved", "cells moved: {}", ["a", "b", "c", "d", "e", "f", "g"])
    notes.duplicate(cells[3])
    notes.duplicate(cells[3])
    assert notes.ordered() == [
        "2 duplicates of test cell scale_test dropped",
        "cells moved: a, b, c, d, e, f and 1 more",
        "answer why not found, graded as unanswered",
    ]
    notes.duplicate(cells[0])
    assert notes.ordered()[0] == "duplicates dropped: instructor cell heading, test cell scale_test"


def test_tidy_separates_a_merged_test_and_joins_a_split_answer(release):
    submitted = nbformat.v4.new_notebook()
    head, body = ANSWER.split("\n    y = ")
    submitted.cells = [
        _cell("markdown", "# Scaling", "heading"),
        _cell("markdown", "Write `scale`.", "question"),
        _cell("code", head, "scale", solution=True),
        nbformat.v4.new_code_cell("    y = " + body + "\n\nassert scale(1) == 2"),  # split, then merged with the test
        _cell("markdown", "Because doubling is linear.", "why", solution=True),
    ]
    tidied = tidy(submitted, release)
    assert tidied.notes == [
        "answer scale split over 2 cells, joined",
        "test cell scale_test separated from a merged cell",
    ]
    assert tidied.answers == {"scale": ANSWER, "why": "Because doubling is linear."}
    assert [cell.source for cell in tidied.notebook.cells] == [
        "# Scaling",
        "Write `scale`.",
        ANSWER,
        "assert scale(1) == 2",
        "Because doubling is linear.",
    ]
