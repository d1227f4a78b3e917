"""A grading folder with a real nbgrader gradebook filled through nbgrader's API, without grading anything."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import grade_cells

SOURCE = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
CELLS = grade_cells(SOURCE)


def write_grading_folder(folder: Path, fill: Callable) -> Path:
    """Make `folder` a grading folder: the instructor's source in course/, a gradebook with the assignment's cells.

    Args:
        folder: created if missing.
        fill: called with the open nbgrader Gradebook to add students, submissions and scores (committed after).

    Returns:
        `folder`.
    """
    from nbgrader.api import Gradebook

    source = folder / "course" / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    source.parent.mkdir(parents=True)
    source.write_bytes(SOURCE_NOTEBOOK.read_bytes())
    (folder / "gradebook.db").write_bytes(_assignment_gradebook())
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{folder / 'gradebook.db'}", COURSE_ID) as book:
        warnings.simplefilter("ignore")  # nbgrader's submission creation triggers SQLAlchemy autoflush warnings
        fill(book)
        book.db.commit()
    return folder


_EMPTY_GRADEBOOK: list[bytes] = []
"""The bytes of a gradebook holding the assignment and its cells, no student: made once per test process."""


def _assignment_gradebook() -> bytes:
    """Return a gradebook with the assignment's cells (nbgrader creates a new one with alembic, in seconds: once)."""
    from nbgrader.api import Gradebook

    if not _EMPTY_GRADEBOOK:
        with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
            # nbgrader runs the `alembic` executable to create a gradebook: the venv's bin/ must be on PATH.
            patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
            path = Path(scratch) / "gradebook.db"
            with Gradebook(f"sqlite:///{path}", COURSE_ID) as book:
                book.update_or_create_assignment(ASSIGNMENT)
                book.update_or_create_notebook(NOTEBOOK, ASSIGNMENT)
                for cell in CELLS:
                    kind = "code" if cell.autograded else "markdown"
                    book.update_or_create_grade_cell(
                        cell.grade_id, NOTEBOOK, ASSIGNMENT, max_score=cell.points, cell_type=kind
                    )
                book.db.commit()
            _EMPTY_GRADEBOOK.append(path.read_bytes())
    return _EMPTY_GRADEBOOK[0]


def give_scores(book, student_id: str, exercises: set[int], manual_share: float | None) -> None:
    """Give the student full points on the autograded cells of `exercises` (0 elsewhere), and on each written answer
    `manual_share` of its points (None: still to grade by hand)."""
    for grade in book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student_id).grades:
        cell = next(cell for cell in CELLS if cell.grade_id == grade.name)
        if cell.autograded:
            grade.auto_score = cell.points if cell.exercise in exercises else 0.0
            grade.needs_manual_grade = False
        elif manual_share is not None:
            grade.manual_score = cell.points * manual_share
            grade.needs_manual_grade = False
