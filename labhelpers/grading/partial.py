"""Regrade some tests of submissions graded before (`dora-lab grade --only GRADE_ID…`), keeping everything else.

After a judge is fixed, only its tests need grading again: their probes run again in the sandbox and their judges
decide again, while the notebook's run (its outputs and written answers), the other tests' verdicts and scores and
the manual grades stay as they were. The regraded verdicts replace the old ones in the gradebook, the result file,
the status and the feedback page.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import nbformat

from labhelpers.grading.course import TIDIED
from labhelpers.grading.judging import Verdict
from labhelpers.grading.submissions import Submission
from labhelpers.grading.worker import (
    Result,
    Worker,
    WorkerSettings,
    _Laps,
    _notebook_path,
    _verdict_notes,
    result_path,
)

NOT_RUN = "nbgrader could not run the notebook"
"""How the status of a submission whose notebook nbgrader could not run begins (its feedback is a plain page)."""
FROM_VERDICTS = ("the notebook's own run disagreed on", "nbgrader generate_feedback failed")
"""How the status lines written from the verdicts and the feedback begin: written again from the new verdicts."""


def previous_result(course: Path, student_id: str) -> Result | None:
    """Return the student's last result, or None when there is none with verdicts (never graded, or lost)."""
    path = result_path(course, student_id)
    try:
        result = Result(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return result if result.verdicts else None


def partial_problem(course: Path, submission: Submission) -> str:
    """Say why the submission's tests cannot be regraded alone ("" when they can).

    Args:
        course: the graded copy's course folder.
        submission: the student's submission as it is now.
    """
    staged = _notebook_path(course, "submitted", submission.student_id)
    if (
        previous_result(course, submission.student_id) is None
        or not _notebook_path(course, TIDIED, submission.student_id).is_file()
    ):
        return f"{submission.student_id} has no finished grading to regrade tests of"
    if not staged.is_file() or staged.read_bytes() != submission.notebook.read_bytes():
        return f"{submission.student_id} submitted another notebook since it was graded"
    return ""


class PartialWorker(Worker):
    """A worker that probes and judges only the tests of `WorkerSettings.only`, on submissions graded before."""

    def __init__(self, run: WorkerSettings):
        super().__init__(run)
        self.every_cell = self.cells
        self.cells = [cell for cell in self.cells if cell.grade_id in set(run.only)]

    def _grade(self, student_id: str, deadline: float, result: Result) -> None:
        """Probe and judge the chosen tests again; merge their verdicts into the last result; score; feed back."""
        previous = previous_result(self.course, student_id)
        if previous is None:
            raise RuntimeError(f"no finished grading of {student_id} to regrade tests of")
        old = {grade_id: Verdict(**verdict) for grade_id, verdict in previous.verdicts.items()}
        notebook = nbformat.read(_notebook_path(self.course, TIDIED, student_id), as_version=4)
        lap = _Laps(result.phases).lap
        fresh, notes = self._probe_and_judge(notebook, deadline, lap)
        result.status += notes
        verdicts = {cell.grade_id: fresh.get(cell.grade_id) or old[cell.grade_id] for cell in self.every_cell}
        result.verdicts = {grade_id: asdict(verdict) for grade_id, verdict in verdicts.items()}
        written = set(_verdict_notes(old))
        kept = [line for line in previous.status if line not in written and not line.startswith(FROM_VERDICTS)]
        result.status = list(dict.fromkeys([*kept, *result.status, *_verdict_notes(verdicts)]))
        self._score(student_id, fresh)
        ran = not any(line.startswith(NOT_RUN) for line in previous.status)
        self._feed_back(student_id, verdicts, ran, result, lap)
