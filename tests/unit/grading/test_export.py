"""grades.csv from a real nbgrader gradebook: one row per student of the class, points by exercise, the status."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import warnings

import nbformat
import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import grade_cells, points_by_exercise
from labhelpers.grading.export import grade_rows, write_grades_csv
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry

SOURCE = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
CELLS = grade_cells(SOURCE)


def _scores(book, student_id: str, exercises: set[int], manual_graded: bool) -> None:
    """Give the student full points on the autograded cells of `exercises` (0 elsewhere) and mark the manual cells."""
    for grade in book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student_id).grades:
        cell = next(cell for cell in CELLS if cell.grade_id == grade.name)
        if cell.autograded:
            grade.auto_score = cell.points if cell.exercise in exercises else 0.0
            grade.needs_manual_grade = False
        elif manual_graded:
            grade.manual_score = cell.points / 2
            grade.needs_manual_grade = False


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A grading folder: the instructor's source in course/, a gradebook of four students, a ledger of three."""
    from nbgrader.api import Gradebook

    folder = tmp_path_factory.mktemp("graded")
    source = folder / "course" / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    source.parent.mkdir(parents=True)
    source.write_bytes(SOURCE_NOTEBOOK.read_bytes())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # nbgrader's alembic
        with warnings.catch_warnings(), Gradebook(f"sqlite:///{folder / 'gradebook.db'}", COURSE_ID) as book:
            warnings.simplefilter("ignore")  # nbgrader's submission creation triggers SQLAlchemy autoflush warnings
            _fill(book)
    ledger = {
        "ana": LedgerEntry([], "k"),
        "ben": LedgerEntry(["repaired: a; b", "answer not found: x"], "k"),
        "no_submission": LedgerEntry(["no notebook"], "k"),
    }
    Ledger(folder / STATUS_FILE, ledger).write()
    return folder


def _fill(book) -> None:
    """Add the assignment, its grade cells and the students: ana complete, ben Exercises 1-2, one of an earlier class."""
    book.update_or_create_assignment(ASSIGNMENT)
    book.update_or_create_notebook(NOTEBOOK, ASSIGNMENT)
    for cell in CELLS:
        kind = "code" if cell.autograded else "markdown"
        book.update_or_create_grade_cell(cell.grade_id, NOTEBOOK, ASSIGNMENT, max_score=cell.points, cell_type=kind)
    for student_id in ("ana", "ben", "earlier_class", "no_submission"):
        book.update_or_create_student(student_id)
    for student_id in ("ana", "ben", "earlier_class"):
        book.update_or_create_submission(ASSIGNMENT, student_id)
    _scores(book, "ana", {1, 2, 3, 4, 5}, manual_graded=True)
    _scores(book, "ben", {1, 2}, manual_graded=False)
    _scores(book, "earlier_class", {1}, manual_graded=False)
    book.db.commit()


@pytest.fixture
def out_dir(graded, tmp_path):
    """A copy of the grading folder for one test (nbgrader's gradebook is built once: it takes seconds)."""
    return shutil.copytree(graded, tmp_path / "graded")


def test_grade_rows_hold_the_class_with_points_by_exercise(out_dir):
    header, rows = grade_rows(out_dir)
    by_exercise = points_by_exercise(SOURCE)
    manual = sum(cell.points for cell in CELLS if not cell.autograded)
    exercises = sorted({cell.exercise for cell in CELLS})
    assert header == [
        "student_id",
        "score",
        "max_score",
        *[f"exercise_{n}" for n in exercises],
        "manual_pending",
        "status",
    ]
    assert [row["student_id"] for row in rows] == ["ana", "ben"]  # earlier_class: not in the ledger; no_submission
    ana, ben = rows
    total = sum(by_exercise.values())
    assert ana["score"] == f"{total + manual / 2:g}" and ana["max_score"] == f"{total + manual:g}"
    assert ana["manual_pending"] == "0" and ana["status"] == "ok"
    assert ben["score"] == f"{by_exercise[1] + by_exercise[2]:g}" and ben["manual_pending"] == f"{manual:g}"
    assert ben["status"] == "repaired: a; b; answer not found: x"
    for number in exercises:
        assert float(ben[f"exercise_{number}"]) == (by_exercise[number] if number in (1, 2) else 0)


def test_without_a_ledger_every_submission_of_the_gradebook_is_exported(out_dir):
    (out_dir / STATUS_FILE).unlink()
    _, rows = grade_rows(out_dir)
    assert [row["student_id"] for row in rows] == ["ana", "ben", "earlier_class"]
    assert all(row["status"] == "ok" for row in rows)


def test_write_grades_csv_writes_the_rows(out_dir, tmp_path):
    path = write_grades_csv(out_dir, tmp_path / "elsewhere.csv")
    header, rows = grade_rows(out_dir)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == header and list(reader) == rows
    assert write_grades_csv(out_dir) == out_dir / "grades.csv"
