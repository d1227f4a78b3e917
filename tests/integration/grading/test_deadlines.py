"""Due date, extensions and late penalty in a real nbgrader gradebook: nbgrader's AssignLatePenalties applies the
policy, and grades.csv shows the same penalty on the score of the moment."""

from __future__ import annotations

import os
import shutil
from datetime import datetime

import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.deadlines import (
    DeadlineChange,
    PenaltyPerDay,
    parse_due,
    parse_extensions,
    read_deadline,
    set_deadline,
)
from labhelpers.grading.export import grade_rows
from tests.support.gradebook import give_scores, write_grading_folder

DUE = "2026-03-02T17:00+01:00"
"""16:00 UTC."""
SCORE = 18.0
"""Every student below has all autograded points and no manual grade yet."""
# (student id, nbgrader's timestamp.txt, extension in hours, expected penalty as a share of the score)
CASES = [
    ("on_time", "2026-03-02 15:59:59.000000 UTC", 0, 0.0),
    ("a_second_late_is_a_day", "2026-03-02 16:00:01.000000 UTC", 0, 0.1),
    ("late_25_5_hours_is_two_days", "2026-03-03 17:30:00.000000 UTC", 0, 0.2),
    ("late_after_a_12_hour_extension", "2026-03-03 17:30:00.000000 UTC", 12, 0.1),
    ("extension_covers_it", "2026-03-03 17:30:00.000000 UTC", 48, 0.0),
    ("never_more_than_the_score", "2026-03-20 12:00:00.000000 UTC", 0, 1.0),
    ("no_submission_time", None, 0, 0.0),
]


def _fill(book) -> None:
    for student_id, timestamp, _, _ in CASES:
        book.update_or_create_student(student_id)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        book.update_or_create_submission(ASSIGNMENT, student_id, **kwargs)
        give_scores(book, student_id, {1, 2, 3, 4, 5}, manual_share=None)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A grading folder whose gradebook has a submission per case, then the due date and the extensions set."""
    folder = write_grading_folder(tmp_path_factory.mktemp("graded"), _fill)
    extensions = tuple((student_id, float(extra)) for student_id, _, extra, _ in CASES if extra)
    set_deadline(folder, DeadlineChange(due=DUE, extensions=extensions))
    return folder


@pytest.mark.parametrize(("student_id", "timestamp", "extension", "share"), CASES, ids=[case[0] for case in CASES])
def test_late_penalty_in_grades_csv_and_gradebook(graded, student_id, timestamp, extension, share):
    from nbgrader.api import Gradebook

    rows = {row["student_id"]: row for row in grade_rows(graded)[1]}
    row = rows[student_id]
    assert float(row["late_penalty"]) == pytest.approx(share * SCORE)
    assert float(row["score"]) == pytest.approx((1 - share) * SCORE)
    assert float(row["exercise_1"]) == 3  # the exercise columns are the points before the penalty
    assert (row["status"] == "ok") == (share == 0)
    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}", COURSE_ID) as book:  # nbgrader's AssignLatePenalties
        written = book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student_id).late_submission_penalty
    assert (written or 0.0) == pytest.approx(share * SCORE)


def test_status_says_how_late(graded):
    rows = {row["student_id"]: row for row in grade_rows(graded)[1]}
    assert rows["late_25_5_hours_is_two_days"]["status"] == "25.5 h after the due date and extension: late penalty 3.6"
    assert rows["late_after_a_12_hour_extension"]["status"].startswith("13.5 h after the due date and extension")


def test_penalty_per_day_comes_from_the_graded_copys_settings(graded, tmp_path):
    out_dir = shutil.copytree(graded, tmp_path / "graded")
    deadline = set_deadline(out_dir, DeadlineChange(percent_per_day=25))
    assert deadline.percent_per_day == 25
    rows = {row["student_id"]: row for row in grade_rows(out_dir)[1]}
    assert float(rows["late_25_5_hours_is_two_days"]["late_penalty"]) == pytest.approx(0.5 * SCORE)


def test_extension_replaces_the_last_and_zero_removes_it(graded, tmp_path):
    out_dir = shutil.copytree(graded, tmp_path / "graded")
    set_deadline(out_dir, DeadlineChange(extensions=(("late_25_5_hours_is_two_days", 1.0),)))
    set_deadline(out_dir, DeadlineChange(extensions=(("late_25_5_hours_is_two_days", 2.0),)))  # 2 h, not 3
    late = {student.student_id: student for student in read_deadline(out_dir).students}
    assert late["late_25_5_hours_is_two_days"].seconds_late == pytest.approx(23.5 * 3600)
    set_deadline(out_dir, DeadlineChange(extensions=(("extension_covers_it", 0.0),)))
    late = {student.student_id: student for student in read_deadline(out_dir).students}
    assert late["extension_covers_it"].extension_hours == 0 and late["extension_covers_it"].penalty > 0


def test_summary_states_the_due_date_the_policy_and_each_submission(graded):
    summary = read_deadline(graded).summary().splitlines()
    assert summary[0] == (
        "due 2026-03-02 16:00 UTC; late penalty: 10 % of the score per day or part of a day after the due date "
        "(plus the student's extension)"
    )
    assert "late_25_5_hours_is_two_days: submitted 2026-03-03 17:30 UTC, 25.5 h late: penalty 3.6 of 18" in summary
    assert "extension_covers_it: submitted 2026-03-03 17:30 UTC, extension 48 h, on time" in summary
    assert "no_submission_time: no submission time" in summary


def test_due_date_is_read_in_its_time_zone():
    assert parse_due("2026-03-02T17:00+01:00") == datetime(2026, 3, 2, 16, 0)
    assert parse_due("2026-03-02T16:00Z") == datetime(2026, 3, 2, 16, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-03-02T17:00", "has no time zone: add one, e.g. 2026-03-02T17:00\\+01:00"),
        ("next friday", "is not a date: write it as 2026-03-02T17:00\\+01:00"),
    ],
)
def test_due_date_without_a_time_zone_or_not_a_date_is_refused(text, message):
    with pytest.raises(LabGradingError, match=message):
        parse_due(text)


@pytest.mark.parametrize("text", ["-1", "two days", "nan"])
def test_extension_that_is_not_hours_is_refused(text):
    with pytest.raises(LabGradingError, match=f"--extend ana {text}: give the extension in hours, 0 or more"):
        parse_extensions([("ana", text)])


def test_penalty_outside_0_to_100_percent_is_refused(graded, tmp_path):
    out_dir = shutil.copytree(graded, tmp_path / "graded")
    with pytest.raises(LabGradingError, match="--penalty-per-day 150: give a percentage from 0 to 100"):
        set_deadline(out_dir, DeadlineChange(percent_per_day=150))


def test_penalty_per_day_plugin_is_nbgraders():
    from nbgrader.plugins import LateSubmissionPlugin

    plugin = PenaltyPerDay(percent_per_day=10)
    assert isinstance(plugin, LateSubmissionPlugin)
    assert plugin.late_submission_penalty("ana", 17.0, 3600) == 1.7
    assert plugin.late_submission_penalty("ana", 17.0, 2 * 86400 + 1) == 5.1


def test_deadline_command_sets_the_extension_and_prints_the_summary(graded, tmp_path, capsys, monkeypatch):
    from labhelpers import cli

    monkeypatch.setenv("PATH", os.environ["PATH"])  # main() puts the venv's bin/ first; the next test gets it back
    out_dir = shutil.copytree(graded, tmp_path / "graded")
    cli.main(["deadline", str(out_dir), "--extend", "late_25_5_hours_is_two_days", "30", "--penalty-per-day", "5"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith(
        "late penalty: 5 % of the score per day or part of a day after the due date (plus the student's extension)"
    )
    assert "late_25_5_hours_is_two_days: submitted 2026-03-03 17:30 UTC, extension 30 h, on time" in printed


def test_deadline_command_without_options_shows_the_deadline(graded, capsys, monkeypatch):
    from labhelpers import cli

    monkeypatch.setenv("PATH", os.environ["PATH"])
    before = (graded / "gradebook.db").read_bytes()
    cli.main(["deadline", str(graded)])
    assert capsys.readouterr().out == read_deadline(graded).summary() + "\n"
    assert (graded / "gradebook.db").read_bytes() == before  # showing writes nothing


def test_deadline_command_refuses_an_extension_that_is_not_hours(graded, monkeypatch):
    from labhelpers import cli

    monkeypatch.setenv("PATH", os.environ["PATH"])
    with pytest.raises(SystemExit, match="dora-lab deadline: --extend ana soon: give the extension in hours"):
        cli.main(["deadline", str(graded), "--extend", "ana", "soon"])
