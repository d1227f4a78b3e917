"""Grades for a learning management system's gradebook import: Canvas's and Moodle's CSV layouts.

Students are graded under their hub user names (TLJH's system users are `jupyter-<name>`); the LMS knows them by
its own ids. A roster maps one to the other: a CSV with a column of hub names (default `hub_id`) beside the LMS's
identity columns — Canvas's gradebook export with that column added is one. Every graded student missing from the
roster, and every roster student without a grade, is listed (and left out of the file, so that the import changes
nothing for them): on the command line and in a file beside the export.

Layouts, as each LMS documents its import:
- Canvas (Grades > Import): the columns of its own gradebook export, `Student, ID, SIS User ID, SIS Login ID,
  Section`, then one column per assignment named `<assignment name> (<assignment id>)` (a name without an id makes
  Canvas create a new assignment), and a second row `    Points Possible` with the assignment's maximum.
- Moodle (Grade administration > Import > CSV file): a header row, a column identifying the user — `ID number` or
  `Email address`, mapped to useridnumber or useremail on the import page — and the grade column, mapped there to the
  grade item.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.errors import LabGradingError

FORMATS = ("canvas", "moodle")
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "    Points Possible"
"""The second row of Canvas's gradebook export (read as such, and skipped, in a roster)."""
MOODLE_IDS = {
    "idnumber": ("ID number", ("idnumber", "ID number")),
    "email": ("Email address", ("email", "Email address")),
}
"""{identifier: (its column's name in the file, as Moodle's export names it; the roster columns that may hold it)}."""
HUB_PREFIX = "jupyter-"
"""The Littlest JupyterHub's prefix of system user names: `jupyter-ana` is the hub user `ana`."""


@dataclass(frozen=True)
class LmsOptions:
    """What `dora-lab export --format canvas|moodle` writes.

    Attributes:
        format: "canvas" or "moodle".
        roster: the roster CSV.
        assignment: the assignment's (Canvas) or grade item's (Moodle) name.
        assignment_id: Canvas's assignment id (empty: Canvas creates a new assignment).
        hub_column: the roster's column of hub user names.
        moodle_id: "idnumber" or "email" (empty: idnumber when the roster has it, else email).
    """

    format: str
    roster: Path
    assignment: str = "DoRA Lab"
    assignment_id: str = ""
    hub_column: str = "hub_id"
    moodle_id: str = ""


@dataclass
class LmsExport:
    """What an export wrote, and whom it could not place.

    Attributes:
        path: the LMS's CSV.
        unmatched_path: the CSV listing the students left out (student_id, problem).
        written: students in the LMS's CSV.
        unknown: graded students the roster does not name.
        missing: roster students with no grade.
        pending: exported students whose written answers are not all graded yet (their score lacks those points).
    """

    path: Path
    unmatched_path: Path
    written: int = 0
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Return one line per student left out or incomplete, for stderr."""
        return (
            [f"graded, not on the roster (left out): {student}" for student in self.unknown]
            + [f"on the roster, not graded (left out): {student}" for student in self.missing]
            + [f"written answers not all graded yet: {student}" for student in self.pending]
        )


def read_roster(path: Path, hub_column: str) -> tuple[list[str], list[dict[str, str]]]:
    """Read the roster: (its header, its rows); refuse one without the hub column, or naming a hub user twice."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [row for row in reader if (row.get("Student") or "").strip() != POINTS_POSSIBLE.strip()]
            header = reader.fieldnames or []
    except OSError as error:
        raise LabGradingError(f"--roster {path}: {error.strerror}") from None
    if hub_column not in header:
        raise LabGradingError(
            f"--roster {path} has no {hub_column!r} column (its columns: {', '.join(header)}): add a column of hub "
            "user names, or name the one that holds them with --roster-hub-column"
        )
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        hub_id = (row.get(hub_column) or "").strip()
        if hub_id and hub_id in seen:
            raise LabGradingError(f"--roster {path}: {hub_id!r} is on line {seen[hub_id]} and line {line}")
        seen[hub_id] = line
    return header, rows


def _who(row: dict[str, str], hub_column: str) -> str:
    """Name a roster row: its hub name, else its other identity columns."""
    for column in (hub_column, "Student", "SIS Login ID", "ID number", "idnumber", "Email address", "email"):
        if (row.get(column) or "").strip():
            return row[column].strip()
    return "a roster line with no name"


def match(student_ids: list[str], roster: list[dict[str, str]], hub_column: str) -> dict[str, dict[str, str]]:
    """Return {graded student id: their roster row}, in the roster's order.

    A student matches the row of the same hub name; else TLJH's `jupyter-<name>` matches the row `<name>` when no
    student is graded under `<name>` itself. Rows without a hub name match nobody.
    """
    by_hub = {(row.get(hub_column) or "").strip(): index for index, row in enumerate(roster)}
    by_hub.pop("", None)
    taken = {by_hub[student_id]: student_id for student_id in student_ids if student_id in by_hub}
    for student_id in student_ids:
        index = by_hub.get(student_id.removeprefix(HUB_PREFIX))
        if student_id not in by_hub and index is not None and index not in taken:
            taken[index] = student_id
    return {taken[index]: roster[index] for index in sorted(taken)}


def _canvas(options: LmsOptions, grades: dict[str, dict[str, str]], matched: dict, header: list[str]) -> list[list]:
    missing = [column for column in CANVAS_COLUMNS if column not in header]
    if missing:
        raise LabGradingError(
            f"--roster {options.roster} lacks Canvas's columns {', '.join(missing)}: start from Canvas's gradebook "
            "export (Grades > Export), which has them"
        )
    column = f"{options.assignment} ({options.assignment_id})" if options.assignment_id else options.assignment
    maximum = max((float(row["max_score"]) for row in grades.values()), default=0.0)
    table = [[*CANVAS_COLUMNS, column], [POINTS_POSSIBLE, "", "", "", "", f"{maximum:g}"]]
    table += [[roster.get(c, "") for c in CANVAS_COLUMNS] + [grades[s]["score"]] for s, roster in matched.items()]
    return table


def _moodle(options: LmsOptions, grades: dict[str, dict[str, str]], matched: dict, header: list[str]) -> list[list]:
    wanted = options.moodle_id or next(
        (key for key, (_, names) in MOODLE_IDS.items() if any(n in header for n in names)), "idnumber"
    )
    if wanted not in MOODLE_IDS:
        raise LabGradingError(f"--moodle-id {wanted!r}: choose idnumber or email")
    title, names = MOODLE_IDS[wanted]
    source = next((name for name in names if name in header), None)
    if source is None:
        raise LabGradingError(f"--roster {options.roster} has no {' or '.join(names)} column for Moodle's {title}")
    empty = [student for student, roster in matched.items() if not (roster.get(source) or "").strip()]
    if empty:
        raise LabGradingError(f"--roster {options.roster}: no {source} for {', '.join(empty)}")
    return [
        [title, options.assignment],
        *([roster[source].strip(), grades[s]["score"]] for s, roster in matched.items()),
    ]


def export_lms(rows: list[dict[str, str]], options: LmsOptions, path: Path) -> LmsExport:
    """Write the grades in the LMS's layout to `path`, and the students left out beside it.

    Args:
        rows: grades.csv's rows (labhelpers.grading.export.grade_rows).
        options: the format, the roster and the assignment.
        path: the LMS's CSV; `<path stem>_unmatched.csv` beside it lists who is left out, and why.

    Returns:
        What was written, and whom it could not place.
    """
    if options.format not in FORMATS:
        raise LabGradingError(f"--format {options.format!r}: choose one of {', '.join(FORMATS)}")
    header, roster = read_roster(options.roster, options.hub_column)
    grades = {row["student_id"]: row for row in rows}
    matched = match(list(grades), roster, options.hub_column)
    placed = {id(row) for row in matched.values()}
    result = LmsExport(path, path.with_name(f"{path.stem}_unmatched.csv"), written=len(matched))
    result.unknown = [student for student in grades if student not in matched]
    result.missing = [_who(row, options.hub_column) for row in roster if id(row) not in placed]
    result.pending = [student for student in matched if float(grades[student].get("manual_pending") or 0) > 0]
    table = (_canvas if options.format == "canvas" else _moodle)(options, grades, matched, header)
    _write(path, table)
    _write(
        result.unmatched_path,
        [["student_id", "problem"]]
        + [[s, "graded, not on the roster"] for s in result.unknown]
        + [[s, "on the roster, not graded"] for s in result.missing],
    )
    return result


def _write(path: Path, table: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)
