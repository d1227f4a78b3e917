"""grades.csv from the gradebook: total, maximum, one column per exercise, and what was unusual."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK
from labhelpers.grading.course import course_config, grade_cells
from labhelpers.grading.ledger import Ledger

COLUMNS = ("student_id", "score", "max_score")


def _number(value: float) -> str:
    return f"{value:g}"


def grade_rows(out_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read every student's scores from OUT_DIR's gradebook, with the statuses the grading run recorded.

    Args:
        out_dir: the folder `dora-lab grade` wrote (gradebook.db, course/, status.json).

    Returns:
        (the CSV header, one row per student sorted by id).
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
            score = max_score = pending = 0.0
            for grade in notebook.grades:
                column = f"exercise_{exercise_of.get(grade.name, 0)}"
                points = grade.score or 0.0
                score += points
                max_score += grade.max_score
                if column in per_exercise:
                    per_exercise[column] += points
                if grade.needs_manual_grade:
                    pending += grade.max_score
            status = ledger.status(student.id)
            rows.append(
                {
                    "student_id": student.id,
                    "score": _number(score),
                    "max_score": _number(max_score),
                    **{column: _number(value) for column, value in per_exercise.items()},
                    "manual_pending": _number(pending),
                    "status": "; ".join(status) or "ok",
                }
            )
    return header, rows


def write_grades_csv(out_dir: Path, path: Path | None = None) -> Path:
    """Write grades.csv (default OUT_DIR/grades.csv) from OUT_DIR's gradebook; return its path."""
    header, rows = grade_rows(out_dir)
    path = path or out_dir / "grades.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path
