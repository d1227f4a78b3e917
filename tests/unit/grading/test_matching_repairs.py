"""The repairs of `tidy` on a small release: definitions written in another cell, forged grade cells, pasted images."""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbconvert import HTMLExporter

from labhelpers.grading.matching import tidy
from labhelpers.grading.matching.attachments import completed, pooled, read_attachments

SCALE_STUB = 'def scale(x):\n    """Return x times two."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
SCALE = 'def scale(x):\n    """Return x times two."""\n    return 2 * x'
PAIR_STUB = (
    "import math\n\n\n"
    'def first(x):\n    """Return x."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\n\n'
    'def second(x):\n    """Return x squared."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
)
FIRST = 'def first(x):\n    """Return x."""\n    return x'
SECOND = 'def second(x):\n    """Return x squared."""\n    return x * x'
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="
OTHER_PNG = PNG.replace("AAAAF", "AAAAG")
EXTRA_STUB = 'def extra(x):\n    """Return x plus one."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
EXTRA = 'def extra(x):\n    """Return x plus one."""\n    return x + 1'


def _cell(cell_type: str, source: str, grade_id: str, solution: bool = False, points: float | None = None):
    make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    meta = {"grade_id": grade_id, "solution": solution, "grade": points is not None, "locked": not solution}
    if points is not None:
        meta["points"] = points
    return make(source, metadata={"nbgrader": meta}, id=grade_id.replace("_", "-"))


@pytest.fixture
def release():
    """Three code answers (one function; two functions after an import; one function), tests, a written answer."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        _cell("markdown", "# Scaling", "heading"),
        _cell("code", SCALE_STUB, "scale", solution=True),
        _cell("code", "assert scale(1) == 2", "scale_test", points=2),
        _cell("code", PAIR_STUB, "pair", solution=True),
        _cell("code", "assert second(3) == 9", "pair_test", points=1),
        _cell("code", EXTRA_STUB, "extra", solution=True),
        _cell("markdown", "YOUR ANSWER HERE", "why", solution=True, points=2),
    ]
    return notebook


def _answers(release, **sources: str):
    notebook = copy.deepcopy(release)
    for cell in notebook.cells:
        if cell.metadata.nbgrader.grade_id in sources:
            cell.source = sources[cell.metadata.nbgrader.grade_id]
    return notebook


def _at(notebook, grade_id: str) -> int:
    return next(i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


# Definitions written in another cell.


def test_a_definition_gathered_in_another_answer_cell_is_graded_and_its_stub_no_longer_shadows_it(release):
    tidied = tidy(_answers(release, scale=SCALE + "\n\n\n" + FIRST + "\n\n\n" + SECOND), release)
    assert tidied.notes == ["first, second found in answer cell scale"]
    assert tidied.missing == []
    # The stub's import stays; its definitions give way to a comment that says where the graded ones are.
    assert tidied.answers["pair"] == (
        "import math\n\n"
        "# first: graded from its definition in answer cell scale\n"
        "# second: graded from its definition in answer cell scale"
    )


def test_an_answer_cell_deleted_after_its_definition_was_written_elsewhere_is_not_missing(release):
    notebook = _answers(release, scale=SCALE + "\n\n" + FIRST + "\n\n" + SECOND)
    del notebook.cells[_at(notebook, "pair")]
    tidied = tidy(notebook, release)
    assert (tidied.notes, tidied.missing) == (["first, second found in answer cell scale"], [])


def test_only_the_definitions_found_elsewhere_leave_a_cell_with_an_answer_of_its_own(release):
    # `second` answered in its own cell, under the untouched stub of `first`; `first` written in the first cell.
    own = PAIR_STUB.replace(
        SECOND.split('    """')[0]
        + '    """Return x squared."""\n    # YOUR CODE HERE\n    raise NotImplementedError()',
        SECOND,
    )
    tidied = tidy(_answers(release, scale=SCALE + "\n\n" + FIRST, pair=own), release)
    assert tidied.notes == ["first found in answer cell scale"]
    assert "def first" not in tidied.answers["pair"] and SECOND in tidied.answers["pair"]
    assert tidied.answers["pair"].endswith("# first: graded from its definition in answer cell scale")


def test_a_definition_written_in_an_added_cell_becomes_the_answer(release):
    notebook = _answers(release, scale=SCALE)
    notebook.cells.insert(_at(notebook, "pair_test") + 1, nbformat.v4.new_code_cell(FIRST + "\n\n" + SECOND))
    tidied = tidy(notebook, release)
    # The added cell is the answer `pair`, found by its definitions; the stub left in its place is dropped.
    assert tidied.notes == [
        "answer pair moved back into place",
        "answer pair found by content (nbgrader metadata missing)",
    ]
    assert tidied.answers["pair"] == FIRST + "\n\n" + SECOND


@pytest.mark.parametrize(
    ("sources", "answer"),
    [
        (
            {"pair": FIRST + "\n\n" + SECOND, "scale": SCALE + "\n\n" + FIRST.replace("x", "y")},
            FIRST + "\n\n" + SECOND,
        ),
        ({}, PAIR_STUB),
        ({"scale": SCALE + "\n\n" + PAIR_STUB}, PAIR_STUB),
    ],
    ids=["own_cell_answers_it", "nothing_answered", "stub_copied_elsewhere"],
)
def test_an_answer_with_its_own_definitions_or_none_anywhere_is_left_as_it_is(release, sources, answer):
    tidied = tidy(_answers(release, **sources), release)
    assert tidied.notes == [] and tidied.answers["pair"] == answer


def test_the_last_definition_that_is_not_the_stub_is_graded(release):
    later = FIRST.replace("return x", "return +x")
    tidied = tidy(
        _answers(release, scale=SCALE + "\n\n" + FIRST + "\n\n" + SECOND, extra=EXTRA + "\n\n" + later), release
    )
    assert tidied.notes == ["first found in answer cell extra", "second found in answer cell scale"]


def test_an_import_elsewhere_never_stands_in_for_an_unanswered_definition(release):
    notebook = _answers(release, scale=SCALE)
    notebook.cells.append(
        nbformat.v4.new_code_cell("from operator import pos as first\nfrom operator import neg as extra")
    )
    tidied = tidy(notebook, release)
    assert tidied.notes == [] and tidied.answers["pair"] == PAIR_STUB and tidied.answers["extra"] == EXTRA_STUB


# Forged grade cells.


def _forged(grade_id: str, points: object, grade: bool = True) -> nbformat.NotebookNode:
    meta = {"grade_id": grade_id, "grade": grade, "solution": False, "locked": True, "points": points}
    return nbformat.v4.new_code_cell("assert True", metadata={"nbgrader": meta})


@pytest.mark.parametrize(
    ("grade_id", "points", "grade", "review"),
    [
        ("my_bonus", 100, True, ["removed forged grade cell my_bonus (100 points): please review"]),
        ("scale_test", 100, True, ["removed forged grade cell scale_test (100 points, the release gives 2): please review"]),
        ("scale", 5, True, ["removed forged grade cell scale (5 points, a cell the release does not grade): please review"]),
        ("my_bonus", "lots", True, ["removed forged grade cell my_bonus (no valid points): please review"]),
        ("scale_test", 2.0, True, []),
        ("other_notebook_cell", 3, False, []),
    ],
    ids=["unknown_id", "other_points", "ungraded_cell", "unreadable_points", "honest_copy", "not_graded"],
)  # fmt: skip
def test_a_forged_grade_cell_is_removed_and_named_for_review(release, grade_id, points, grade, review):
    notebook = _answers(release, scale=SCALE)
    notebook.cells.insert(3, _forged(grade_id, points, grade))
    tidied = tidy(notebook, release)
    assert tidied.review == review
    graded = [cell.metadata.nbgrader for cell in tidied.notebook.cells if "nbgrader" in cell.metadata]
    assert graded == [cell.metadata.nbgrader for cell in release.cells]  # the release's grade cells, and only those


def test_forged_points_on_the_release_test_cell_itself_are_replaced_by_the_releases(release):
    notebook = _answers(release, scale=SCALE)
    notebook.cells[_at(notebook, "scale_test")].metadata.nbgrader.points = 100
    tidied = tidy(notebook, release)
    assert tidied.review == ["removed forged grade cell scale_test (100 points, the release gives 2): please review"]
    assert tidied.notebook.cells[_at(tidied.notebook, "scale_test")].metadata.nbgrader.points == 2


# Pasted images.


def _render(cell: nbformat.NotebookNode) -> str:
    """The cell as nbconvert's HTML (what nbgrader's feedback page shows), which fails on a missing attachment."""
    return HTMLExporter().from_notebook_node(nbformat.v4.new_notebook(cells=[cell]))[0]


def _why(notebook) -> nbformat.NotebookNode:
    return notebook.cells[_at(notebook, "why")]


def test_a_pasted_image_stays_with_its_written_answer_and_shows_on_the_page(release):
    notebook = _answers(release, why="Because.\n\n![image.png](attachment:image.png)")
    _why(notebook)["attachments"] = {"image.png": {"image/png": PNG}}
    tidied = tidy(notebook, release)
    assert tidied.notes == []
    assert _why(tidied.notebook).attachments == {"image.png": {"image/png": PNG}}
    nbformat.validate(tidied.notebook)
    assert f"data:image/png;base64,{PNG}" in _render(_why(tidied.notebook))


def test_an_image_the_cell_lacks_is_marked_in_its_place_and_the_page_renders(release):
    notebook = _answers(release, why="See ![plot](attachment:plot.png).")
    tidied = tidy(notebook, release)
    assert tidied.notes == ["image plot.png missing from answer why, marked in its place"]
    page = _render(_why(tidied.notebook))
    assert "data:image/svg+xml;base64," in page


def test_the_parts_of_a_split_written_answer_pool_their_images(release):
    notebook = _answers(release, why="One: ![image.png](attachment:image.png)")
    _why(notebook)["attachments"] = {"image.png": {"image/png": PNG}}
    second = nbformat.v4.new_markdown_cell("Two: ![image.png](attachment:image.png)")
    second["attachments"] = {"image.png": {"image/png": OTHER_PNG}}
    notebook.cells.insert(_at(notebook, "why") + 1, second)
    tidied = tidy(notebook, release)
    assert (
        tidied.answers["why"] == "One: ![image.png](attachment:image.png)\n\nTwo: ![image.png](attachment:image-2.png)"
    )
    assert _why(tidied.notebook).attachments == {
        "image.png": {"image/png": PNG},
        "image-2.png": {"image/png": OTHER_PNG},
    }


def test_an_added_markdown_cell_keeps_its_image(release):
    notebook = _answers(release)
    note = nbformat.v4.new_markdown_cell("My sketch: ![image.png](attachment:image.png)")
    note["attachments"] = {"image.png": {"image/png": PNG}}
    notebook.cells.insert(1, note)
    tidied = tidy(notebook, release)
    added = [cell for cell in tidied.notebook.cells if "nbgrader" not in cell.metadata]
    assert [cell.attachments for cell in added] == [{"image.png": {"image/png": PNG}}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a.png": {"image/png": PNG}}, {"a.png": {"image/png": PNG}}),
        ({"a.png": {"image/png": [PNG[:10], PNG[10:]]}}, {"a.png": {"image/png": PNG}}),
        ({"a.png": {}, "": {"image/png": PNG}, "b.png": "x", 3: {}}, {}),
        (["a.png"], {}),
    ],
    ids=["bundle", "lines_joined", "unusable_entries", "not_a_mapping"],
)
def test_read_attachments_keeps_only_image_bundles(value, expected):
    assert read_attachments(value) == expected


def test_pooled_renames_only_a_name_two_parts_use_for_different_images():
    same = {"image.png": {"image/png": PNG}}
    texts, pool = pooled([("![a](attachment:image.png)", same), ("![b](attachment:image.png)", same)])
    assert (texts, pool) == (["![a](attachment:image.png)", "![b](attachment:image.png)"], same)
    texts, _ = pooled(
        [
            ("x", same),
            ("![](attachment:image.png) ![](attachment:image.png.bak)", {"image.png": {"image/png": OTHER_PNG}}),
        ]
    )
    assert texts[1] == "![](attachment:image-2.png) ![](attachment:image.png.bak)"


def test_completed_adds_a_picture_only_for_the_names_the_cell_lacks():
    own = {"a.png": {"image/png": PNG}}
    assert completed("![](attachment:a.png)", own) == (own, [])
    attachments, missing = completed("![](attachment:a.png) ![](attachment:b.png)", own)
    assert missing == ["b.png"] and set(attachments) == {"a.png", "b.png"}
