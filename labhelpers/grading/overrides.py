"""Grade overrides with a reason, OUT_DIR/overrides.csv: applied to grades.csv's scores after grading, each audited.

The instructor writes one line per change, `student,test,points,reason`: `test` is a test's grade id (e.g.
dora_linear_matches_peft) or an exercise column of grades.csv (e.g. exercise_2), `points` what the student gets for
it. The gradebook keeps the grader's scores; every grades.csv (and the LMS files and the report made from it) shows
the overridden points, with an audit line in the status column. Regrading never loses an override: it is applied
each time grades.csv is written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.course import GradeCell

OVERRIDES_FILE = "overrides.csv"
COLUMNS = ("student", "test", "points", "reason")
AUDIT = "override:"
"""How every audit line of the status column begins."""


@dataclass(frozen=True)
class Override:
    """One line of overrides.csv.

    Attributes:
        student: the student id.
        target: a test's grade id, or an exercise column (exercise_N).
        points: the points the student gets for it.
        reason: why, in the instructor's words (required: it is the audit trail).
        line: its line number in overrides.csv, for messages.
    """

    student: str
    target: str
    points: float
    reason: str
    line: int


def _maxima(cells: Iterable[GradeCell]) -> dict[str, float]:
    """Return {grade id or exercise_N: its maximum points}."""
    maxima: dict[str, float] = {}
    for cell in cells:
        maxima[cell.grade_id] = cell.points
        column = f"exercise_{cell.exercise}"
        maxima[column] = maxima.get(column, 0.0) + cell.points
    return maxima


def _parse(row: dict, line: int, maxima: Mapping[str, float], where: Path) -> Override:
    """Read one row of overrides.csv; raise LabGradingError naming the line and the fix."""
    student, target = (row.get("student") or "").strip(), (row.get("test") or "").strip()
    reason = (row.get("reason") or "").strip()
    at = f"{where}, line {line}"
    if not student or not reason:
        raise LabGradingError(f"{at}: every override needs a student and a reason (the audit trail)")
    if target not in maxima:
        raise LabGradingError(
            f"{at}: {target!r} is neither a test nor an exercise column; use one of {', '.join(maxima)}"
        )
    try:
        points = float(row.get("points") or "")
    except ValueError:
        raise LabGradingError(f"{at}: points {row.get('points')!r} is not a number") from None
    if not 0 <= points <= maxima[target]:
        raise LabGradingError(f"{at}: {points:g} points for {target}, which is worth 0 to {maxima[target]:g}")
    return Override(student, target, points, reason, line)


def read_overrides(out_dir: Path, cells: Iterable[GradeCell]) -> dict[str, list[Override]]:
    """Read and check OUT_DIR/overrides.csv (none: no overrides).

    Args:
        out_dir: the grading folder.
        cells: the assignment's graded cells (what can be overridden, and its maximum).

    Returns:
        {student: their overrides, in file order}. Raises LabGradingError for any line it cannot apply.
    """
    path = out_dir / OVERRIDES_FILE
    if not path.is_file():
        return {}
    cells = list(cells)
    maxima, exercise_of = _maxima(cells), {cell.grade_id: f"exercise_{cell.exercise}" for cell in cells}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise LabGradingError(f"{path}: the header must name {', '.join(COLUMNS)} (missing: {', '.join(missing)})")
        overrides: dict[str, list[Override]] = {}
        for line, row in enumerate(reader, start=2):
            override = _parse(row, line, maxima, path)
            theirs = overrides.setdefault(override.student, [])
            clash = [o for o in theirs if o.target in (override.target, exercise_of.get(override.target))]
            clash += [o for o in theirs if exercise_of.get(o.target) == override.target]
            if clash:
                raise LabGradingError(
                    f"{path}, line {line}: {override.student}'s {override.target} is already overridden on line "
                    f"{clash[0].line} ({clash[0].target}); keep one of the two"
                )
            theirs.append(override)
    return overrides


def unknown_students(overrides: Mapping[str, list[Override]], student_ids: Iterable[str]) -> list[str]:
    """Return one message per override of a student who is not in `student_ids` (the class)."""
    known = set(student_ids)
    return [
        f"{OVERRIDES_FILE}, line {o.line}: {student} is not in this class"
        for student, theirs in overrides.items()
        if student not in known
        for o in theirs
    ]


def apply_overrides(
    theirs: Iterable[Override], earned: Mapping[str, float], exercise_of: Mapping[str, int], per_exercise: dict
) -> tuple[float, list[str]]:
    """Apply one student's overrides to their points; return (the change of their score, the audit lines).

    Args:
        theirs: the student's overrides.
        earned: {grade id: points the gradebook gives} (before any override).
        exercise_of: {grade id: exercise number}.
        per_exercise: {exercise_N: points}, changed in place.

    Returns:
        (points added to the score, negative when taken away; one "override: ..." line per override).
    """
    change, audit = 0.0, []
    for override in theirs:
        if override.target.startswith("exercise_") and override.target not in earned:
            before = per_exercise.get(override.target, 0.0)
            per_exercise[override.target] = override.points
        else:
            before = earned.get(override.target, 0.0)
            column = f"exercise_{exercise_of.get(override.target, 0)}"
            per_exercise[column] = per_exercise.get(column, 0.0) + override.points - before
        change += override.points - before
        audit.append(f"{AUDIT} {override.target} {before:g} → {override.points:g} points ({override.reason})")
    return change, audit


def check_overrides(out_dir: Path, cells: Iterable[GradeCell], student_ids: Iterable[str]) -> None:
    """Refuse, before grading, an overrides.csv that cannot be applied or names a student outside the class."""
    unknown = unknown_students(read_overrides(out_dir, cells), student_ids)
    if unknown:
        raise LabGradingError("; ".join(unknown) + ": correct the student id or remove the line")
