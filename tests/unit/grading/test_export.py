"""grades.csv from a real nbgrader gradebook: one row per student of the class, points by exercise, the status."""

from __future__ import annotations

import csv
import shutil

import pytest

from labhelpers.assignment import ASSIGNMENT
from labhelpers.grading.course import points_by_exercise
from labhelpers.grading.export import grade_rows, write_grades_csv
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry
from tests.support.gradebook import CELLS, SOURCE, give_scores, write_grading_folder


def _fill(book) -> None:
    """Add the students: ana complete, ben Exercises 1-2, one of an earlier class, one who submitted nothing."""
    for student_id in ("ana", "ben", "earlier_class", "no_submission"):
        book.update_or_create_student(student_id)
    for student_id in ("ana", "ben", "earlier_class"):
        book.update_or_create_submission(ASSIGNMENT, student_id)
    give_scores(book, "ana", {1, 2, 3, 4, 5}, manual_share=0.5)
    give_scores(book, "ben", {1, 2}, manual_share=None)
    give_scores(book, "earlier_class", {1}, manual_share=None)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A grading folder: the instructor's source in course/, a gradebook of four students, a ledger of three."""
    folder = write_grading_folder(tmp_path_factory.mktemp("graded"), _fill)
    ledger = {
        "ana": LedgerEntry([], "k"),
        "ben": LedgerEntry(["repaired: a; b", "answer not found: x"], "k"),
        "no_submission": LedgerEntry(["no notebook"], "k"),
    }
    Ledger(folder / STATUS_FILE, ledger).write()
    return folder


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
        "late_penalty",
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
    assert ana["late_penalty"] == ben["late_penalty"] == "0"  # no due date: nobody is late


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
