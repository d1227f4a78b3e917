"""Grade overrides (OUT_DIR/overrides.csv): checked line by line, applied to grades.csv's scores with an audit line."""

from __future__ import annotations

import pytest

from labhelpers.assignment import ASSIGNMENT
from labhelpers.errors import LabGradingError
from labhelpers.grading.export import grade_rows
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry
from labhelpers.grading.overrides import (
    OVERRIDES_FILE,
    apply_overrides,
    check_overrides,
    read_overrides,
    unknown_students,
)
from tests.support.gradebook import CELLS, give_scores, write_grading_folder

EXERCISE_OF = {cell.grade_id: cell.exercise for cell in CELLS}


def _write(folder, *lines: str) -> None:
    (folder / OVERRIDES_FILE).write_text("\n".join(["student,test,points,reason", *lines]) + "\n")


def test_overrides_are_read_by_student_in_file_order(tmp_path):
    _write(tmp_path, "ana,dora_linear_matches_peft,5,accepted an equivalent form", 'ben,exercise_4,3,"late, excused"')
    overrides = read_overrides(tmp_path, CELLS)
    assert [(o.target, o.points, o.reason, o.line) for o in overrides["ana"]] == [
        ("dora_linear_matches_peft", 5.0, "accepted an equivalent form", 2)
    ]
    assert overrides["ben"][0].reason == "late, excused" and read_overrides(tmp_path / "none", CELLS) == {}


@pytest.mark.parametrize(
    "lines, phrase",
    [
        (["ana,dora_linear_matches_peft,5,"], "line 2: every override needs a student and a reason"),
        (["ana,dora_linear,5,why"], "line 2: 'dora_linear' is neither a test nor an exercise column"),
        (["ana,dora_linear_matches_peft,five,why"], "points 'five' is not a number"),
        (["ana,dora_linear_matches_peft,6,why"], "6 points for dora_linear_matches_peft, which is worth 0 to 5"),
        (["ana,exercise_2,-1,why"], "-1 points for exercise_2"),
        (["ana,exercise_2,1,why", "ana,exercise_2,2,why"], "line 3: ana's exercise_2 is already overridden on line 2"),
        (["ana,exercise_2,1,why", "ana,dora_linear_matches_peft,2,why"], "already overridden on line 2 \\(exercise_2"),
        (["ana,dora_linear_matches_peft,2,why", "ana,exercise_2,1,why"], "overridden on line 2 \\(dora_linear"),
    ],
    ids=["no-reason", "unknown-test", "not-a-number", "above-maximum", "negative", "twice", "exercise-then-test",
         "test-then-exercise"],
)  # fmt: skip
def test_a_line_that_cannot_be_applied_is_refused_naming_it(tmp_path, lines, phrase):
    _write(tmp_path, *lines)
    with pytest.raises(LabGradingError, match=phrase):
        read_overrides(tmp_path, CELLS)


def test_a_header_without_the_columns_is_refused(tmp_path):
    (tmp_path / OVERRIDES_FILE).write_text("student,grade,reason\n")
    with pytest.raises(LabGradingError, match="the header must name student, test, points, reason"):
        read_overrides(tmp_path, CELLS)


def test_an_override_replaces_a_tests_or_an_exercises_points_and_says_so(tmp_path):
    _write(tmp_path, "ana,dora_linear_matches_peft,5,equivalent form", "ana,exercise_4,1,partial credit")
    earned = {
        "dora_linear_matches_peft": 0.0,
        "peft_models_are_correct": 1.0,
        "train_one_epoch_matches_reference": 2.0,
    }
    per_exercise = {"exercise_2": 0.0, "exercise_4": 3.0}
    change, audit = apply_overrides(read_overrides(tmp_path, CELLS)["ana"], earned, EXERCISE_OF, per_exercise)
    assert change == 5 - 2 and per_exercise == {"exercise_2": 5.0, "exercise_4": 1.0}
    assert audit == [
        "override: dora_linear_matches_peft 0 → 5 points (equivalent form)",
        "override: exercise_4 3 → 1 points (partial credit)",
    ]


def test_overrides_of_students_outside_the_class_are_named_and_stop_grading_before_it_starts(tmp_path):
    _write(tmp_path, "ana,exercise_1,1,why", "zoe,exercise_1,1,why")
    assert unknown_students(read_overrides(tmp_path, CELLS), ["ana", "ben"]) == [
        "overrides.csv, line 3: zoe is not in this class"
    ]
    with pytest.raises(LabGradingError, match="line 3: zoe is not in this class: correct the student id"):
        check_overrides(tmp_path, CELLS, ["ana", "ben"])
    check_overrides(tmp_path, CELLS, ["ana", "zoe"])


def _fill(book) -> None:
    for student_id in ("ana", "ben"):
        book.update_or_create_student(student_id)
        book.update_or_create_submission(ASSIGNMENT, student_id)
    give_scores(book, "ana", {1, 2, 3, 4, 5}, manual_share=1.0)
    give_scores(book, "ben", {1}, manual_share=None)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = write_grading_folder(tmp_path_factory.mktemp("graded"), _fill)
    Ledger(folder / STATUS_FILE, {"ana": LedgerEntry([], "k"), "ben": LedgerEntry([], "k")}).write()
    return folder


def test_grades_csv_shows_the_overridden_points_and_the_gradebook_keeps_the_graders(graded):
    _, before = grade_rows(graded)
    _write(graded, "ben,dora_linear_matches_peft,4,equivalent form", "ana,exercise_5,0,copied (see the log)")
    try:
        _, after = grade_rows(graded)
    finally:
        (graded / OVERRIDES_FILE).unlink()
    (ana0, ben0), (ana, ben) = before, after
    assert float(ben["score"]) == float(ben0["score"]) + 4 and float(ben["exercise_2"]) == 4
    assert ben["status"] == "override: dora_linear_matches_peft 0 → 4 points (equivalent form)"
    assert float(ana["score"]) == float(ana0["score"]) - float(ana0["exercise_5"]) and ana["exercise_5"] == "0"
    assert ana["status"].startswith("override: exercise_5 ") and grade_rows(graded)[1] == before
