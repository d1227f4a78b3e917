"""Cell matching on notebooks far from honest: whole copies, unrelated notebooks, not notebooks, random damage.

`tidy` never raises on a submission and always rebuilds the release's cells; these cases need the release only (the
committed one, which the release test keeps equal to nbgrader's), no gradebook.
"""

from __future__ import annotations

import copy
import json
import random

import nbformat
import pytest

from labhelpers.assignment import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.matching import tidy
from labhelpers.grading.samples import perfect as answered_perfectly


@pytest.fixture(scope="module")
def release():
    """The student notebook as released (nbgrader's generate_assignment output, committed)."""
    return nbformat.read(RELEASE_NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def perfect(release):
    """The release answered with the instructor's solutions, as a student would hand it in untouched."""
    return answered_perfectly(release, nbformat.read(SOURCE_NOTEBOOK, as_version=4))


def test_pasted_everything_twice_names_the_duplicates(release, perfect):
    notebook = copy.deepcopy(perfect)
    notebook.cells.extend(copy.deepcopy(notebook.cells))  # select all, copy, paste at the end
    tidied = tidy(notebook, release)
    assert tidied.notes == [
        "duplicates dropped: instructor cell intro, instructor cell setup, instructor cell ex1_intro, answer "
        f"decompose_weight, test cell decompose_weight_matches_definition, instructor cell ex1_real_intro and "
        f"{len(release.cells) - 6} more"
    ]
    assert tidied.status.startswith("repaired: duplicates dropped: instructor cell intro")


def test_unrelated_notebook_keeps_its_cells_and_names_every_lost_answer(release):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# My other homework"), nbformat.v4.new_code_cell("x = 1")]
    tidied = tidy(notebook, release)
    answers = [c.metadata.nbgrader.grade_id for c in release.cells if c.metadata.nbgrader.get("solution")]
    assert tidied.notes == [
        "no cell of the lab notebook found",
        "answers not found, graded as unanswered: " + ", ".join(answers),
    ]
    assert tidied.missing == answers
    assert tidied.added_code == ["x = 1"]
    assert tidied.answers == {
        c.metadata.nbgrader.grade_id: c.source for c in release.cells if c.metadata.nbgrader.get("solution")
    }


NOT_NOTEBOOKS = {
    "empty_notebook": nbformat.v4.new_notebook(),
    "none": None,
    "number": 42,
    "text": "{not json",
    "cells_not_a_list": {"cells": "oops"},
    "odd_cells": {
        "cells": [
            None,
            7,
            {"cell_type": "weird", "source": ["a\n", 3]},
            {"metadata": [], "source": None, "id": "bad id!"},
            {"cell_type": "code", "source": ["print(", "'hi')"], "metadata": {"nbgrader": "not a dict"}},
            {"cell_type": "markdown", "source": "x", "metadata": {"nbgrader": {"grade_id": 5}}},
        ]
    },
}


@pytest.mark.parametrize("submitted", NOT_NOTEBOOKS.values(), ids=NOT_NOTEBOOKS)
def test_odd_input_never_raises(submitted, release):
    tidied = tidy(submitted, release)
    nbformat.validate(tidied.notebook)
    assert len(tidied.missing) == sum(bool(c.metadata.nbgrader.get("solution")) for c in release.cells)
    assert tidied.notes[0] in ("the notebook has no cells", "no cell of the lab notebook found")
    if submitted is NOT_NOTEBOOKS["odd_cells"]:
        assert tidied.notes[1] == "2 unreadable cells skipped"
        assert tidied.added_code == ["print('hi')"]


def test_large_notebook_counts_the_copies_and_keeps_every_added_cell(release, perfect):
    notebook = copy.deepcopy(perfect)
    test = next(
        cell for cell in notebook.cells if cell.metadata.nbgrader.grade_id == "decompose_weight_matches_definition"
    )
    notebook.cells += [copy.deepcopy(test) for _ in range(2000)] + [
        nbformat.v4.new_code_cell(f"x{i} = {i}") for i in range(2000)
    ]
    tidied = tidy(notebook, release)
    assert tidied.notes == ["2000 duplicates of test cell decompose_weight_matches_definition dropped"]
    assert len(tidied.added_code) == 2000


def _split_at(cells, i, rng):
    cell = cells[i]
    if isinstance(cell.get("source"), str) and cell["source"]:
        cut = rng.randrange(len(cell["source"]))
        tail = {**copy.deepcopy(cell), "source": cell["source"][cut:], "metadata": rng.choice([{}, cell["metadata"]])}
        cells[i : i + 1] = [{**cell, "source": cell["source"][:cut]}, tail]


def _merge_at(cells, i, rng):
    if i + 1 < len(cells) and isinstance(cells[i + 1], dict):
        cells[i]["source"] = f"{cells[i].get('source')}\n\n{cells[i + 1].get('source')}"
        del cells[i + 1]


# What editing can do to one cell, with odd values a broken file can hold; applied at random, several per notebook.
RANDOM_EDITS = {
    "copy": lambda cells, i, rng: cells.insert(rng.randrange(len(cells) + 1), copy.deepcopy(cells[i])),
    "delete": lambda cells, i, rng: cells.pop(i),
    "split": _split_at,
    "merge": _merge_at,
    "move": lambda cells, i, rng: cells.insert(rng.randrange(len(cells)), cells.pop(i)),
    "drop_metadata": lambda cells, i, rng: cells[i].update(metadata={}),
    "change_type": lambda cells, i, rng: cells[i].update(cell_type=rng.choice(["code", "markdown", "raw", "x", None])),
    "odd_source": lambda cells, i, rng: cells[i].update(
        source=rng.choice([None, 5, ["a", 1], "", "    x", "YOUR ANSWER HERE"])
    ),
    "odd_nbgrader": lambda cells, i, rng: cells[i].update(
        metadata={"nbgrader": rng.choice([{}, None, "x", {"grade_id": 3}])}
    ),
    "odd_id": lambda cells, i, rng: cells[i].update(id=rng.choice([None, "same", "not valid!", 7])),
    "not_a_cell": lambda cells, i, rng: cells.__setitem__(i, rng.choice([None, 3, "cell", []])),
}


@pytest.mark.parametrize("seed", range(4))
def test_random_edits_never_break_the_rebuild(seed, release, perfect):
    rng = random.Random(seed)
    instructor = [cell.source for cell in release.cells if not cell.metadata.nbgrader.get("solution")]
    for _ in range(25):
        notebook = json.loads(json.dumps(perfect))
        for _ in range(rng.randint(1, 8)):
            cells = notebook["cells"]
            i = rng.randrange(len(cells)) if cells else None
            if i is not None and isinstance(cells[i], dict):
                RANDOM_EDITS[rng.choice(sorted(RANDOM_EDITS))](cells, i, rng)
        tidied = tidy(notebook, release)
        nbformat.validate(tidied.notebook)
        graded = [cell for cell in tidied.notebook.cells if "nbgrader" in cell.metadata]
        assert [cell.source for cell in graded if not cell.metadata.nbgrader.get("solution")] == instructor
        assert [cell.id for cell in graded] == [cell.id for cell in release.cells]


def test_a_release_without_nbgrader_metadata_is_refused(release):
    broken = copy.deepcopy(release)
    del broken.cells[3].metadata["nbgrader"]
    with pytest.raises(LabGradingError, match="has no nbgrader grade_id.*dora-lab release"):
        tidy(release, broken)
