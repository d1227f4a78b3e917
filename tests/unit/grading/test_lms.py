"""Grades in Canvas's and Moodle's import layouts, students mapped through a roster, nobody silently left out.

The expected files in tests/data/lms/ are written in each LMS's documented layout: Canvas's gradebook export
(Student, ID, SIS User ID, SIS Login ID, Section, "<assignment> (<id>)", a "    Points Possible" row) and Moodle's
CSV grade import (a user identifier column, ID number or Email address, and the grade item's column).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from labhelpers import cli
from labhelpers.assignment import ASSIGNMENT
from labhelpers.errors import LabGradingError
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry
from labhelpers.grading.lms import LmsOptions, export_lms
from tests.support.gradebook import give_scores, write_grading_folder

DATA = Path(__file__).resolve().parents[2] / "data" / "lms"


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture
def grades() -> list[dict[str, str]]:
    """grades.csv of three students: alan (on the roster), jupyter-ada (TLJH's name of ada), mallory (not on it)."""
    with open(DATA / "grades.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_canvas_gets_its_gradebook_layout_with_the_roster_students_in_roster_order(grades, tmp_path):
    options = LmsOptions("canvas", DATA / "canvas_roster.csv", "DoRA Lab", "4242")
    result = export_lms(grades, options, tmp_path / "canvas.csv")
    assert _rows(result.path) == _rows(DATA / "canvas_import.csv")
    assert (result.written, result.unknown, result.missing) == (2, ["mallory"], ["grace", "Student, Test"])
    assert result.pending == ["alan"]  # his written answers are not graded yet: his score lacks them
    assert _rows(result.unmatched_path) == [
        ["student_id", "problem"],
        ["mallory", "graded, not on the roster"],
        ["grace", "on the roster, not graded"],
        ["Student, Test", "on the roster, not graded"],
    ]
    assert "graded, not on the roster (left out): mallory" in result.problems()


@pytest.mark.parametrize("identifier", ["idnumber", "email"])
def test_moodle_gets_an_identifier_column_and_the_grade_column(grades, tmp_path, identifier):
    options = LmsOptions("moodle", DATA / "moodle_roster.csv", "DoRA Lab", moodle_id=identifier)
    result = export_lms(grades, options, tmp_path / "moodle.csv")
    assert _rows(result.path) == _rows(DATA / f"moodle_import_{identifier}.csv")
    assert (result.unknown, result.missing) == (["mallory"], ["grace"])


def test_moodle_identifies_by_id_number_when_the_roster_has_it(grades, tmp_path):
    result = export_lms(grades, LmsOptions("moodle", DATA / "moodle_roster.csv"), tmp_path / "moodle.csv")
    assert _rows(result.path) == _rows(DATA / "moodle_import_idnumber.csv")


def test_a_graded_name_and_its_tljh_name_do_not_both_take_one_roster_line(grades, tmp_path):
    both = [*grades, {**grades[0], "student_id": "jupyter-alan"}]
    result = export_lms(both, LmsOptions("moodle", DATA / "moodle_roster.csv"), tmp_path / "moodle.csv")
    assert result.unknown == ["mallory", "jupyter-alan"] and result.written == 2


def _roster(tmp_path: Path, text: str) -> Path:
    (tmp_path / "roster.csv").write_text(text)
    return tmp_path / "roster.csv"


@pytest.mark.parametrize(
    "kind, roster, phrase",
    [
        ("canvas", "Student,ID\nAda,1\n", "has no 'hub_id' column"),
        ("canvas", "Student,ID,hub_id\nAda,1,ada\n", "lacks Canvas's columns SIS User ID, SIS Login ID, Section"),
        ("moodle", "hub_id,First name\nada,Ada\n", "has no idnumber or ID number column"),
        ("moodle", "hub_id,email\nada,\n", "no email for jupyter-ada"),
        ("moodle", "hub_id,email\nada,a@x\nada,b@x\n", "'ada' is on line 2 and line 3"),
    ],
    ids=["no-hub-column", "not-canvas", "no-identifier", "empty-identifier", "twice"],
)
def test_a_roster_that_cannot_place_the_students_is_refused_saying_why(grades, tmp_path, kind, roster, phrase):
    with pytest.raises(LabGradingError, match=phrase):
        export_lms(grades, LmsOptions(kind, _roster(tmp_path, roster)), tmp_path / "out.csv")


def _fill(book) -> None:
    for student_id in ("alan", "jupyter-ada"):
        book.update_or_create_student(student_id)
        book.update_or_create_submission(ASSIGNMENT, student_id)
    give_scores(book, "alan", {1, 2, 3}, manual_share=None)
    give_scores(book, "jupyter-ada", {1, 2, 3, 4, 5}, manual_share=1.0)


def test_dora_lab_export_writes_the_lms_file_from_the_gradebook_and_lists_who_is_left_out(tmp_path, capsys):
    out = write_grading_folder(tmp_path / "graded", _fill)
    Ledger(out / STATUS_FILE, {"alan": LedgerEntry([], "k"), "jupyter-ada": LedgerEntry([], "k")}).write()
    roster = shutil.copy(DATA / "moodle_roster.csv", tmp_path / "roster.csv")
    cli.main(["export", str(out), "--format", "moodle", "--roster", str(roster), "--assignment", "Lab 3"])
    said = capsys.readouterr()
    assert _rows(out / "moodle.csv")[0] == ["ID number", "Lab 3"] and len(_rows(out / "moodle.csv")) == 3
    assert "on the roster, not graded (left out): grace" in said.err and "written answers not all graded" in said.err
    assert f"wrote {out / 'moodle.csv'} (2 students)" in said.out
    with pytest.raises(SystemExit, match="--format canvas needs --roster"):
        cli.main(["export", str(out), "--format", "canvas"])
