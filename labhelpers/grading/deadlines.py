"""The due date, per-student extensions and the late penalty, kept in nbgrader's gradebook and settings.

nbgrader keeps the due date on the assignment (Assignment.duedate) and each extension on the student's submission
(SubmittedAssignment.extension); a submission's lateness is its collected timestamp.txt after both
(SubmittedAssignment.total_seconds_late). The penalty is nbgrader's: its AssignLatePenalties writes
SubmittedNotebook.late_submission_penalty with a LateSubmissionPlugin, here `PenaltyPerDay`, configured in the graded
copy's nbgrader_config.json. The grader runs it after the judge's scores are written, `dora-lab feedback` after manual
grades change a score, and grades.csv applies the same rule to the score of the moment.

The policy: each day or part of a day after the due date (plus the student's extension) takes `percent_per_day`
percent of the submission's score (default 10), never more than the score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float
from traitlets.config import Config

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import (
    course_config,
    graded_course,
    prepare_course,
    read_course_settings,
    write_course_settings,
)

DEFAULT_PERCENT_PER_DAY = 10.0
SECONDS_PER_DAY = 24 * 3600
POLICY_CLASS = "labhelpers.grading.deadlines.PenaltyPerDay"
"""The LateSubmissionPlugin the graded copy's settings give nbgrader's AssignLatePenalties."""


class PenaltyPerDay(LateSubmissionPlugin):
    """Take `percent_per_day` % of the score for each day or part of a day late, never more than the score."""

    percent_per_day = Float(
        DEFAULT_PERCENT_PER_DAY, min=0.0, max=100.0, help="Percent of the score taken per day or part of a day late."
    ).tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        """Return the points taken from `score` for a submission `total_seconds_late` seconds after its due date."""
        days = math.ceil(total_seconds_late / SECONDS_PER_DAY)
        return round(min(score, score * self.percent_per_day / 100 * days), 2)


def policy_settings(percent_per_day: float) -> dict:
    """Return the nbgrader_config.json sections that make `PenaltyPerDay` at `percent_per_day` nbgrader's policy."""
    return {
        "AssignLatePenalties": {"plugin_class": POLICY_CLASS},
        "PenaltyPerDay": {"percent_per_day": float(percent_per_day)},
    }


def late_policy_config(course: Path) -> Config:
    """Return the graded copy's late-penalty settings (the default policy where none is written) for nbgrader."""
    settings = read_course_settings(course)
    config = Config(policy_settings(DEFAULT_PERCENT_PER_DAY))
    percent = settings.get("PenaltyPerDay", {}).get("percent_per_day")
    if isinstance(percent, (int, float)):
        config.PenaltyPerDay.percent_per_day = float(percent)
    return config


def late_policy(course: Path) -> PenaltyPerDay:
    """Return the graded copy's late-penalty plugin."""
    return PenaltyPerDay(config=late_policy_config(course))


def late_penalty(policy: LateSubmissionPlugin, student_id: str, score: float, seconds_late: float) -> float:
    """Return nbgrader's penalty for one submission: none on time, else the plugin's, kept between 0 and the score.

    The same rule as nbgrader's AssignLatePenalties (its _check_late_penalty), for a score that manual grading may
    have changed since it ran.
    """
    if seconds_late <= 0:
        return 0.0
    penalty = policy.late_submission_penalty(student_id, score, seconds_late)
    return 0.0 if penalty is None else min(max(float(penalty), 0.0), score)


def assign_late_penalties(course: Path, db_path: Path, student_ids: Iterable[str]) -> None:
    """Run nbgrader's AssignLatePenalties on the students' submissions, with the scores the gradebook now holds.

    Args:
        course: the graded copy's course folder (its settings hold the policy).
        db_path: its gradebook.
        student_ids: the students whose submissions are in the gradebook.
    """
    import nbformat
    from nbgrader.preprocessors import AssignLatePenalties

    config = course_config(course, db_path)
    config.merge(late_policy_config(course))
    blank = nbformat.v4.new_notebook()  # the preprocessor reads the gradebook, not the cells
    for student_id in student_ids:
        resources = {
            "nbgrader": {
                "notebook": NOTEBOOK,
                "assignment": ASSIGNMENT,
                "student": student_id,
                "db_url": config.CourseDirectory.db_url,
            }
        }
        AssignLatePenalties(config=config).preprocess(blank, resources)


def parse_due(text: str) -> datetime:
    """Parse a due date in ISO 8601 with its time zone (e.g. 2026-03-02T17:00+01:00, or Z for UTC) into naive UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LabGradingError(
            f"--due {text!r} is not a date: write it as 2026-03-02T17:00+01:00 (or Z for UTC)"
        ) from None
    if when.tzinfo is None:
        raise LabGradingError(
            f"--due {text!r} has no time zone: add one, e.g. {text.strip()}+01:00, or {text.strip()}Z for UTC"
        )
    return when.astimezone(UTC).replace(tzinfo=None)  # nbgrader's gradebook keeps naive UTC times


def parse_extensions(pairs: Iterable[Iterable[str]]) -> tuple[tuple[str, float], ...]:
    """Parse `--extend STUDENT HOURS` pairs into (student id, hours), refusing what is not 0 hours or more."""
    parsed = []
    for student_id, text in pairs:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0:
            raise LabGradingError(
                f"--extend {student_id} {text}: give the extension in hours, 0 or more (0 removes it)"
            )
        parsed.append((student_id, value))
    return tuple(parsed)


@dataclass(frozen=True)
class DeadlineChange:
    """What `dora-lab deadline` was asked to change (nothing: it only reports).

    Attributes:
        due: the new due date, as given (ISO 8601 with a time zone), or None to keep it.
        percent_per_day: the new late penalty, percent of the score per day or part of a day late, or None.
        extensions: (student id, hours) pairs; 0 hours removes that student's extension.
    """

    due: str | None = None
    percent_per_day: float | None = None
    extensions: tuple[tuple[str, float], ...] = ()


@dataclass
class Lateness:
    """One student's submission against the due date.

    Attributes:
        student_id: the student.
        submitted: nbgrader's submission time (UTC), or None when the notebook came without one.
        extension_hours: the student's extension (0 when none).
        seconds_late: after the due date plus the extension (0 when on time).
        penalty: the points the policy takes from `score`.
        score: the points the gradebook holds now, manual grades included, before the penalty.
    """

    student_id: str
    submitted: datetime | None
    extension_hours: float
    seconds_late: float
    penalty: float
    score: float

    def describe(self) -> str:
        """Return one line: when it came in, how late, what it costs."""
        extension = f", extension {self.extension_hours:g} h" if self.extension_hours else ""
        if self.submitted is None:
            return f"{self.student_id}: no submission time{extension}"
        when = f"submitted {self.submitted:%Y-%m-%d %H:%M} UTC{extension}"
        if self.seconds_late <= 0:
            return f"{self.student_id}: {when}, on time"
        return f"{self.student_id}: {when}, {self.seconds_late / 3600:.1f} h late: penalty {self.penalty:g} of {self.score:g}"


@dataclass
class Deadline:
    """The assignment's due date, the late policy and every submission against them.

    Attributes:
        due: the due date (naive UTC, as nbgrader keeps it), or None when none is set.
        percent_per_day: the policy's percent of the score per day or part of a day late.
        students: each submission in the gradebook, by student id.
    """

    due: datetime | None
    percent_per_day: float
    students: list[Lateness] = field(default_factory=list)

    def summary(self) -> str:
        """Return the due date, the policy and one line per submission."""
        due = f"due {self.due:%Y-%m-%d %H:%M} UTC" if self.due else "no due date set (no submission is late)"
        lines = [
            f"{due}; late penalty: {self.percent_per_day:g} % of the score per day or part of a day after the due "
            f"date (plus the student's extension)",
            *(student.describe() for student in self.students),
        ]
        return "\n".join(lines)


def set_deadline(out_dir: Path, change: DeadlineChange, source_notebook: Path = SOURCE_NOTEBOOK) -> Deadline:
    """Apply `change` to OUT_DIR's gradebook (set up first when the folder is new), recompute the penalties, report.

    Nothing is written when nothing is to change.

    Args:
        out_dir: the grading folder; created with its graded copy of the course when it does not exist yet.
        change: the due date, policy and extensions to set.
        source_notebook: the instructor's source, for a grading folder that does not exist yet.

    Returns:
        The deadline as it now stands.
    """
    from nbgrader.api import Gradebook

    out_dir = out_dir.resolve()
    if change == DeadlineChange():
        return read_deadline(out_dir)  # only show it
    try:
        course, db_path = graded_course(out_dir)
    except LabGradingError:
        course, db_path = prepare_course(out_dir, source_notebook)
    due = parse_due(change.due) if change.due is not None else None
    if change.percent_per_day is not None:
        if not 0 <= change.percent_per_day <= 100:
            raise LabGradingError(f"--penalty-per-day {change.percent_per_day:g}: give a percentage from 0 to 100")
        write_course_settings(course, db_path, policy_settings(change.percent_per_day))
    with Gradebook(f"sqlite:///{db_path}", COURSE_ID) as book:
        if due is not None:
            book.update_or_create_assignment(ASSIGNMENT, duedate=due)
        for student_id, extra in change.extensions:
            book.update_or_create_student(student_id)
            book.update_or_create_submission(ASSIGNMENT, student_id)
            book.grant_extension(ASSIGNMENT, student_id, hours=extra)
        students = [submission.student.id for submission in book.find_assignment(ASSIGNMENT).submissions]
    assign_late_penalties(course, db_path, students)
    return read_deadline(out_dir)


def read_deadline(out_dir: Path) -> Deadline:
    """Return OUT_DIR's due date, policy and each submission's lateness and penalty, from its gradebook."""
    from nbgrader.api import Gradebook

    course, db_path = graded_course(out_dir)
    policy = late_policy(course)
    with Gradebook(f"sqlite:///{db_path}", COURSE_ID) as book:
        assignment = book.find_assignment(ASSIGNMENT)
        deadline = Deadline(assignment.duedate, policy.percent_per_day)
        for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
            score = submission.score
            seconds = submission.total_seconds_late
            extension = submission.extension or timedelta()
            deadline.students.append(
                Lateness(
                    submission.student.id,
                    submission.timestamp,
                    extension.total_seconds() / 3600,
                    seconds,
                    late_penalty(policy, submission.student.id, score, seconds),
                    score,
                )
            )
    return deadline
