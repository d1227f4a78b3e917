"""The class report as data: scores, pass rate per test, the judge's named mistakes, statuses, time per phase.

Everything is read from what grading wrote (the gradebook through grades.csv's rows, status.json, each worker's
result file with its verdicts) and summarised into typed records, serialised as report.json and drawn as report.html.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.grading.course import GradeCell
from labhelpers.grading.ledger import Ledger
from labhelpers.grading.overrides import AUDIT, Override

STATUS_KINDS = (
    ("override", r"^override:"),
    ("graded without a sandbox", r"^graded without a sandbox"),
    ("repaired notebook", r"^repaired"),
    ("time-out", r"time-out|time limit|did not finish in time|ran out of the submission's time"),
    ("killed or stopped", r"killed by signal|kernel stopped|kernel exited|memory cap|the worker stopped"),
    ("disagreement with the notebook's own run", r"own run disagreed"),
    ("answer not found", r"^answer not found"),
    ("used reference code", r"reference code"),
    ("grader error", r"grader error|could not judge|could not run the notebook|please review"),
    ("no gradable notebook", r"notebook"),
)
"""(kind, regular expression) of the status lines, first match wins; other lines are "other"."""
PHASES = ("notebook", "probes", "judge", "feedback")
"""A worker's steps, in order (labhelpers.grading.worker)."""
EXAMPLE_CHARS = 400
"""The length of a mistake's example message in the report."""


@dataclass
class TestSummary:
    """How the class did on one autograded test.

    Attributes:
        grade_id: the test cell.
        exercise: its exercise number.
        points: what it is worth.
        passed: students the judge passed.
        failed: students it failed.
        not_judged: students with no verdict on it (no gradable notebook, or grading that did not finish).
        unexplained: the failed students whose failure no named mistake explains (wrong in another way, an error
            in their code, a missing answer).
        pass_rate: passed / (passed + failed); None when nobody was judged.
    """

    grade_id: str
    exercise: int
    points: float
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    pass_rate: float | None = None


@dataclass
class MistakeSummary:
    """One named mistake the judge recognised (checks' Mistake.name), across the class.

    Attributes:
        name: the mistake's name in its judge's catalogue, e.g. "norm_over_dim0".
        tests: the tests that recognised it.
        students: who made it, sorted.
        count: len(students).
        example: the start of a message the judge wrote for it.
    """

    name: str
    tests: list[str]
    students: list[str]
    count: int
    example: str


@dataclass
class StatusSummary:
    """The students whose status has lines of one kind (STATUS_KINDS), and those lines."""

    kind: str
    students: list[str]
    lines: list[str]


@dataclass
class PhaseSummary:
    """Seconds the workers spent in one step over the submissions they graded (or in all: phase "submission")."""

    phase: str
    submissions: int
    mean: float
    median: float
    maximum: float
    total: float
    seconds: list[float] = field(default_factory=list)


@dataclass
class ClassReport:
    """The whole report (report.json)."""

    students: int
    max_score: float
    scores: dict[str, float]
    mean_score: float | None
    median_score: float | None
    tests: list[TestSummary]
    mistakes: list[MistakeSummary]
    statuses: list[StatusSummary]
    phases: list[PhaseSummary]
    overrides: list[dict]


def read_verdicts(course: Path, student_ids: Sequence[str]) -> dict[str, dict[str, dict]]:
    """Return {student: {grade id: verdict as the worker's result file holds it}} of those with a result."""
    verdicts = {}
    for student_id in student_ids:
        try:
            result = json.loads((course / "results" / f"{student_id}.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and isinstance(result.get("verdicts"), dict) and result["verdicts"]:
            verdicts[student_id] = result["verdicts"]
    return verdicts


def summarise_tests(cells: Sequence[GradeCell], student_ids: Sequence[str], verdicts: Mapping) -> list[TestSummary]:
    """Return how the class did on each autograded test, in the notebook's order."""
    tests = []
    for cell in (cell for cell in cells if cell.autograded):
        summary = TestSummary(cell.grade_id, cell.exercise, cell.points)
        for student_id in student_ids:
            verdict = verdicts.get(student_id, {}).get(cell.grade_id)
            if verdict is None:
                summary.not_judged.append(student_id)
            elif verdict.get("passed"):
                summary.passed.append(student_id)
            else:
                summary.failed.append(student_id)
                if not verdict.get("mistakes"):
                    summary.unexplained.append(student_id)
        judged = len(summary.passed) + len(summary.failed)
        summary.pass_rate = len(summary.passed) / judged if judged else None
        tests.append(summary)
    return tests


def summarise_mistakes(verdicts: Mapping[str, Mapping[str, dict]]) -> list[MistakeSummary]:
    """Return every named mistake of the class, most frequent first (then by name)."""
    found: dict[str, MistakeSummary] = {}
    for student_id in sorted(verdicts):
        for grade_id, verdict in verdicts[student_id].items():
            if verdict.get("passed"):
                continue
            for name in verdict.get("mistakes") or []:
                summary = found.setdefault(name, MistakeSummary(name, [], [], 0, verdict["message"][:EXAMPLE_CHARS]))
                if grade_id not in summary.tests:
                    summary.tests.append(grade_id)
                if student_id not in summary.students:
                    summary.students.append(student_id)
    for summary in found.values():
        summary.count = len(summary.students)
    return sorted(found.values(), key=lambda summary: (-summary.count, summary.name))


def status_kind(line: str) -> str:
    """Return the kind (STATUS_KINDS) of one status line, or "other"."""
    return next((kind for kind, pattern in STATUS_KINDS if re.search(pattern, line)), "other")


def summarise_statuses(lines: Mapping[str, Sequence[str]]) -> list[StatusSummary]:
    """Group the students' status lines by kind, in STATUS_KINDS' order ("other" last).

    Args:
        lines: {student: their status lines}.
    """
    groups = {kind: StatusSummary(kind, [], []) for kind, _ in (*STATUS_KINDS, ("other", ""))}
    for student_id in sorted(lines):
        for line in lines[student_id]:
            group = groups[status_kind(line)]
            if student_id not in group.students:
                group.students.append(student_id)
            if line not in group.lines:
                group.lines.append(line)
    return [group for group in groups.values() if group.students]


def summarise_phases(ledger: Ledger) -> list[PhaseSummary]:
    """Return the workers' seconds per step over the submissions they graded, then per submission in all."""
    per_phase: dict[str, list[float]] = {phase: [] for phase in PHASES}
    totals = []
    for entry in ledger.entries.values():
        if entry.seconds is not None:
            totals.append(float(entry.seconds))
        for phase, seconds in (entry.phases or {}).items():
            per_phase.setdefault(phase, []).append(float(seconds))
    summaries = []
    for phase, seconds in [*per_phase.items(), ("submission", totals)]:
        if seconds:
            summaries.append(
                PhaseSummary(
                    phase, len(seconds), round(statistics.fmean(seconds), 1), round(statistics.median(seconds), 1),
                    max(seconds), round(sum(seconds), 1), seconds,
                )
            )  # fmt: skip
    return summaries


def summarise(
    rows: Sequence[Mapping[str, str]],
    ledger: Ledger,
    verdicts: Mapping[str, Mapping[str, dict]],
    cells: Sequence[GradeCell],
    overrides: Mapping[str, Sequence[Override]],
) -> ClassReport:
    """Summarise a graded class.

    Args:
        rows: grades.csv's rows (labhelpers.grading.export.grade_rows), one per student.
        ledger: status.json (status lines, seconds and phases of each student).
        verdicts: read_verdicts' {student: {grade id: verdict}}.
        cells: the assignment's graded cells.
        overrides: overrides.csv's lines by student.

    Returns:
        The report.
    """
    student_ids = [row["student_id"] for row in rows]
    scores = {row["student_id"]: float(row["score"]) for row in rows}
    lines = {student_id: ledger.status(student_id) for student_id in student_ids}
    for row in rows:
        if float(row.get("late_penalty") or 0):
            lines[row["student_id"]].append(f"late penalty {row['late_penalty']}")
        for o in overrides.get(row["student_id"], ()):
            lines[row["student_id"]].append(f"{AUDIT} {o.target} → {o.points:g} points ({o.reason})")
    return ClassReport(
        students=len(rows),
        max_score=max((float(row["max_score"]) for row in rows), default=0.0),
        scores=scores,
        mean_score=round(statistics.fmean(scores.values()), 2) if scores else None,
        median_score=statistics.median(scores.values()) if scores else None,
        tests=summarise_tests(cells, student_ids, verdicts),
        mistakes=summarise_mistakes({s: v for s, v in verdicts.items() if s in scores}),
        statuses=summarise_statuses(lines),
        phases=summarise_phases(ledger),
        overrides=[
            {"student": o.student, "test": o.target, "points": o.points, "reason": o.reason}
            for student in student_ids
            for o in overrides.get(student, ())
        ],
    )
