"""grades.csv from the gradebook: total, maximum, late penalty, one column per exercise, and what was unusual."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK
from labhelpers.grading.course import course_config, grade_cells
from labhelpers.grading.deadlines import late_penalty, late_policy
from labhelpers.grading.ledger import Ledger
from labhelpers.grading.overrides import apply_overrides, read_overrides

COLUMNS = ("student_id", "score", "max_score", "late_penalty")
"""`score` is after the late penalty; the exercise columns are the points earned before it."""


def _number(value: float) -> str:
    return f"{value:g}"


def grade_rows(out_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read every student's scores from OUT_DIR's gradebook, with the statuses the grading run recorded.

    Args:
        out_dir: the folder `dora-lab grade` wrote (gradebook.db, course/, status.json).

    Returns:
        (the CSV header, one row per student sorted by id). The late penalty is the graded copy's policy
        (labhelpers.grading.deadlines) applied to the score the gradebook holds now, manual grades included.
    """
    from nbgrader.api import Gradebook, MissingEntry

    course = out_dir / "course"
    source = nbformat.read(course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    cells = grade_cells(source)
    exercise_of = {cell.grade_id: cell.exercise for cell in cells}
    exercise_columns = [f"exercise_{n}" for n in sorted({cell.exercise for cell in cells})]
    header = [*COLUMNS, *exercise_columns, "manual_pending", "status"]
    ledger = Ledger.read(out_dir)
    config = course_config(course, out_dir / "gradebook.db")
    policy = late_policy(course)
    overrides = read_overrides(out_dir, cells)  # applied on the gradebook's points, before the late penalty
    rows = []
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gradebook:
        for student in sorted(gradebook.students, key=lambda s: s.id):
            if ledger and student.id not in ledger:
                continue  # graded in an earlier run on other submissions: not part of this class
            try:
                notebook = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student.id)
            except MissingEntry:
                continue
            per_exercise = dict.fromkeys(exercise_columns, 0.0)
            score, max_score, pending, earned = _points(notebook.grades, exercise_of, per_exercise)
            change, audit = apply_overrides(overrides.get(student.id, ()), earned, exercise_of, per_exercise)
            score, status = score + change, ledger.status(student.id) + audit
            seconds_late = notebook.assignment.total_seconds_late
            penalty = late_penalty(policy, student.id, score, seconds_late)
            if seconds_late > 0:
                status.append(
                    f"{seconds_late / 3600:.1f} h after the due date and extension: late penalty {penalty:g}"
                )
            rows.append(
                {
                    "student_id": student.id,
                    "score": _number(score - penalty),
                    "max_score": _number(max_score),
                    "late_penalty": _number(penalty),
                    **{column: _number(value) for column, value in per_exercise.items()},
                    "manual_pending": _number(pending),
                    "status": "; ".join(status) or "ok",
                }
            )
    return header, rows


def _points(grades, exercise_of: dict[str, int], per_exercise: dict[str, float]) -> tuple[float, float, float, dict]:
    """Add up a submission's nbgrader grades: (score, maximum, points still to grade by hand, {grade id: points}).

    Args:
        grades: the submission notebook's nbgrader Grade records.
        exercise_of: {grade id: exercise number}.
        per_exercise: {exercise_N: points}, added to in place.
    """
    score = max_score = pending = 0.0
    earned = {}
    for grade in grades:
        column = f"exercise_{exercise_of.get(grade.name, 0)}"
        earned[grade.name] = points = grade.score or 0.0
        score += points
        max_score += grade.max_score
        if column in per_exercise:
            per_exercise[column] += points
        if grade.needs_manual_grade:
            pending += grade.max_score
    return score, max_score, pending, earned


def write_grades_csv(out_dir: Path, path: Path | None = None) -> Path:
    """Write grades.csv (default OUT_DIR/grades.csv) from OUT_DIR's gradebook; return its path."""
    header, rows = grade_rows(out_dir)
    path = path or out_dir / "grades.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path
