"""nbgrader's exchange on a shared JupyterHub: release the student notebook, collect submissions, return feedback.

Every transfer is nbgrader's own (`release_assignment`, `collect`, `release_feedback` of NbGraderAPI), with the
exchange folder that the students' servers use: `c.Exchange.root` in nbgrader_config.py on Jupyter's config path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from traitlets.config import Config

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SUBMITTED_DIRECTORY
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import course_config, release, venv_bin_on_path
from labhelpers.grading.submissions import (
    SECRET_FILE,
    TIMESTAMP_FILE,
    FoundSubmission,
    find_submissions,
    regular_file,
)


def exchange_config(course_root: Path, db_path: Path | None = None) -> Config:
    """Return nbgrader's settings for an exchange transfer: Jupyter's nbgrader_config.py files, then the course's.

    The exchange folder (`c.Exchange.root`) comes from nbgrader_config.py on Jupyter's config path
    (`jupyter --paths`: ~/.jupyter, {sys.prefix}/etc/jupyter, /etc/jupyter, $JUPYTER_CONFIG_PATH), as it does for the
    students' Assignments tab; the course folder, id and gradebook from the project's settings.

    Args:
        course_root: the instructor's course folder (holds solutions/ and notebooks/).
        db_path: its gradebook (default: the one course_config chooses).

    Returns:
        A traitlets Config for NbGraderAPI.
    """
    from nbgrader.apps import NbGrader

    app = NbGrader()
    app.load_config_file()  # what nbgrader's own commands and server extensions read
    config = Config(app.config)
    config.merge(course_config(course_root, db_path))
    config.CourseDirectory.submitted_directory = SUBMITTED_DIRECTORY
    return config


def exchange_root(config: Config) -> Path:
    """Return the exchange folder that `config` names (nbgrader's default when none is set)."""
    from nbgrader.exchange.default import Exchange

    return Path(Exchange(config=config).root)


def _api(config: Config):
    """Return NbGraderAPI for `config`, its exchange as configured."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    venv_bin_on_path()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _lines(result: dict, *levels: str) -> list[str]:
    """Return the messages of nbgrader's captured log at the given levels ("ERROR", "WARNING"...)."""
    prefixes = tuple(f"[{level}] " for level in levels)
    return [line.split("] ", 1)[1] for line in result.get("log", "").splitlines() if line.startswith(prefixes)]


def _check(result: dict, what: str) -> list[str]:
    """Raise LabGradingError with nbgrader's own error lines when `result` failed; else return its warnings."""
    if not result or not result.get("success"):
        errors = _lines(result or {}, "ERROR", "CRITICAL") or [(result or {}).get("error", "").strip()[-800:]]
        raise LabGradingError(f"nbgrader {what} failed: " + " ".join(errors))
    return _lines(result, "WARNING")


def _require_exchange(config: Config) -> Path:
    root = exchange_root(config)
    if not root.is_dir():
        raise LabGradingError(
            f"nbgrader's exchange folder {root} does not exist: set c.Exchange.root in nbgrader_config.py "
            "(in /etc/jupyter/ or ~/.jupyter/) to the folder your students' servers use, or release first."
        )
    return root


def release_to_exchange(course_root: Path = PROJECT_ROOT, force: bool = False) -> tuple[Path, list[str]]:
    """Regenerate the student notebook and release it to the exchange (nbgrader release_assignment).

    Args:
        course_root: the instructor's course folder (holds solutions/dora/dora_lab.ipynb; notebooks/ is rewritten).
        force: replace a release already in the exchange (students who fetched it keep their copy).

    Returns:
        (the released assignment folder in the exchange, nbgrader's warnings).
    """
    course_root = course_root.resolve()
    if not os.access(course_root, os.W_OK):
        raise LabGradingError(
            f"cannot write to the course folder {course_root}: copy its solutions/ into a folder of yours and "
            "give that with --course DIR."
        )
    release(course_root)
    config = exchange_config(course_root)
    config.ExchangeReleaseAssignment.force = force
    # nbgrader refuses to overwrite a release ("add --force to overwrite"): the CLI's --force is that flag.
    warnings = _check(_api(config).release_assignment(ASSIGNMENT), "release_assignment")
    return exchange_root(config) / COURSE_ID / "outbound" / ASSIGNMENT, warnings


class Collected(NamedTuple):
    """What `collect_submissions` did.

    Attributes:
        folder: the course's submitted/ folder, to give `dora-lab grade`.
        submissions: what that folder now holds, one per student.
        warnings: nbgrader's warnings (e.g. a submission whose owner is not the student it names).
    """

    folder: Path
    submissions: list[FoundSubmission]
    warnings: list[str]

    def summary(self) -> str:
        """Say what was collected, what looks wrong, and the next command."""
        lines = [*self.warnings, f"{len(self.submissions)} submissions in {self.folder}/"]
        for found in self.submissions:
            when = f"submitted {found.timestamp}" if found.timestamp else "no submission time"
            lines.append(f"  {found.student_id}: {when}" + "".join(f"; {problem}" for problem in found.problems))
        lines.append(f"next: dora-lab grade {self.folder} --out graded/")
        return "\n".join(lines)


def collect_submissions(course_root: Path = PROJECT_ROOT) -> Collected:
    """Collect the newest submission of every student from the exchange (nbgrader collect, updating older ones).

    Args:
        course_root: the instructor's course folder; submissions go to its submitted/<student>/dora/.

    Returns:
        A Collected record.
    """
    course_root = course_root.resolve()
    config = exchange_config(course_root)
    _require_exchange(config)
    warnings = _check(_api(config).collect(ASSIGNMENT, update=True), "collect")
    submitted = course_root / SUBMITTED_DIRECTORY
    return Collected(submitted, find_submissions(submitted) if submitted.is_dir() else [], warnings)


class Returned(NamedTuple):
    """What `return_feedback` did.

    Attributes:
        students: those whose feedback is now in the exchange.
        not_returned: {student: why not} for the others.
        warnings: nbgrader's warnings.
    """

    students: list[str]
    not_returned: dict[str, str]
    warnings: list[str]

    def summary(self) -> str:
        """Say who gets feedback from the Assignments tab and who does not, and why."""
        lines = [
            *self.warnings,
            f"feedback returned to {len(self.students)}: " + (", ".join(self.students) or "nobody"),
        ]
        lines += [f"  not returned to {student}: {why}" for student, why in self.not_returned.items()]
        if self.students:
            lines.append("students fetch it with 'Fetch Feedback' in the Assignments tab")
        return "\n".join(lines)


def return_feedback(out_dir: Path) -> Returned:
    """Release the feedback of a `dora-lab grade` run to the exchange (nbgrader release_feedback).

    nbgrader names each released file md5(submission_secret + notebook id), so only the student holding that
    submission's secret (their own submit) finds it with fetch_feedback; it needs feedback/<student>/dora/ to hold
    the feedback HTML, timestamp.txt and submission_secret.txt (nbgrader carries the last two from submitted/).

    Args:
        out_dir: the --out folder of `dora-lab grade` (holds course/ and gradebook.db).

    Returns:
        A Returned: students released, students skipped with the reason, nbgrader's warnings.
    """
    out_dir = out_dir.resolve()
    course = out_dir / "course"
    feedback = course / "feedback"
    if not feedback.is_dir():
        raise LabGradingError(f"{feedback} does not exist: give the --out folder of `dora-lab grade` (after grading).")
    config = exchange_config(course, out_dir / "gradebook.db")
    _require_exchange(config)
    ready, skipped = [], {}
    for folder in sorted(path for path in feedback.iterdir() if path.is_dir() and not path.is_symlink()):
        files = folder / ASSIGNMENT
        if not regular_file(files / f"{NOTEBOOK}.html"):
            skipped[folder.name] = f"no {NOTEBOOK}.html: the submission was not graded"
        elif not regular_file(files / SECRET_FILE) or not regular_file(files / TIMESTAMP_FILE):
            skipped[folder.name] = (
                f"not submitted through the exchange (no {SECRET_FILE} and {TIMESTAMP_FILE}): hand out "
                f"{out_dir / 'feedback' / folder.name / (NOTEBOOK + '.html')} yourself"
            )
        else:
            ready.append(folder.name)
    if not ready:
        return Returned([], skipped, [])
    config.CourseDirectory.student_id_exclude = ",".join(skipped)
    warnings = _check(_api(config).release_feedback(ASSIGNMENT), "release_feedback")
    return Returned(ready, skipped, warnings)
