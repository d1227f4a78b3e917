"""Find the submissions of a folder: one student per folder, in either layout the grader accepts.

Plain `<student>/dora_lab.ipynb`, or nbgrader's collected `<student>/dora/dora_lab.ipynb` with its `timestamp.txt`
and `submission_secret.txt`. `find_submissions` says where each student's notebook is (what `dora-lab collect`
reports); `discover_submissions` also reads each notebook and keeps only those that can be graded (what
`dora-lab grade` grades).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SUBMITTED_DIRECTORY
from labhelpers.errors import LabGradingError

TIMESTAMP_FILE = "timestamp.txt"
"""nbgrader's submission time, written by `submit` beside the notebook (autograde reads it: late penalties)."""
SECRET_FILE = "submission_secret.txt"
"""nbgrader's per-submission secret: release_feedback names the feedback file md5(secret + notebook id)."""
MAX_NOTEBOOK_BYTES = 20 * 2**20
"""Larger notebooks are not graded (a notebook of the lab with its outputs is well under 1 MiB)."""
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class FoundSubmission(NamedTuple):
    """One student's folder of a submissions folder, and what finding their notebook showed.

    Attributes:
        student_id: the folder's name, or a usable id made from it (`problems` then says so).
        notebook: the notebook to grade, or None when there is none (`problems` says why).
        timestamp: nbgrader's submission time from timestamp.txt beside the notebook, or None.
        problems: what was unusual, one sentence each for the instructor (empty when nothing was).
    """

    student_id: str
    notebook: Path | None
    timestamp: str | None
    problems: list[str]

    @property
    def exchange_files(self) -> list[Path]:
        """nbgrader's files to copy beside the notebook: a valid timestamp.txt and the submission_secret.txt.

        nbgrader's autograde and generate_feedback carry them from submitted/ to feedback/, where release_feedback
        needs both; an unreadable timestamp.txt is left out (autograde would stop on it).
        """
        if self.notebook is None:
            return []
        names = ([TIMESTAMP_FILE] if self.timestamp is not None else []) + [SECRET_FILE]
        return [path for name in names if regular_file(path := self.notebook.parent / name)]


@dataclass
class Submission:
    """One student to grade: their notebook when it can be graded, and what the status column says.

    Attributes:
        student_id: as FoundSubmission.student_id.
        notebook: a valid notebook to grade, or None (the submission scores 0 and `status` says why).
        timestamp: nbgrader's submission time, or None.
        status: what was unusual, one sentence each (empty when nothing was).
        exchange_files: nbgrader's timestamp.txt and submission_secret.txt, kept beside the notebook
            (`dora-lab return` needs them).
    """

    student_id: str
    notebook: Path | None = None
    timestamp: str | None = None
    status: list[str] = field(default_factory=list)
    exchange_files: list[Path] = field(default_factory=list)


def discover_submissions(submissions_dir: Path) -> list[Submission]:
    """List the submissions of a folder (plain or nbgrader's collected layout), keeping only valid notebooks.

    Args:
        submissions_dir: one folder per student.

    Returns:
        One Submission per student folder, sorted by folder name; one whose notebook cannot be graded has none.
    """
    if not submissions_dir.is_dir():
        raise LabGradingError(
            f"{submissions_dir} is not a folder: give the folder holding one <student_id>/ folder per student."
        )
    submissions = []
    for found in find_submissions(submissions_dir):
        submission = Submission(found.student_id, None, found.timestamp, list(found.problems), found.exchange_files)
        if found.notebook is not None:
            trouble = unreadable(found.notebook)
            if trouble:
                submission.status.append(trouble)
            else:
                submission.notebook = found.notebook
        elif not submission.status:
            submission.status.append(f"no notebook submitted (expected {NOTEBOOK}.ipynb)")
        submissions.append(submission)
    return submissions


def unreadable(path: Path) -> str:
    """Return why `path` cannot be graded as a notebook, or "" when it is a valid one."""
    if path.is_symlink() or not path.is_file():
        return f"{path.name} is not a regular file (links are not followed)"
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB"
    try:
        notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # any parse or schema error: the file is not a notebook we can grade
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        return f"{path.name} is not a valid notebook ({first})"
    return ""


def find_submissions(folder: Path) -> list[FoundSubmission]:
    """List the students of a submissions folder and the notebook of each, in either layout.

    A student folder holds `dora_lab.ipynb` (plain) or `dora/dora_lab.ipynb` (nbgrader's collected layout, which
    wins when both are there). One notebook of another name is graded as dora_lab.ipynb, with a note; with several
    and none of the right name there is nothing to grade. Links are never followed; hidden folders (such as
    Jupyter's .ipynb_checkpoints) are not students; a folder name that is not a usable id is made into one.

    Args:
        folder: one folder per student.

    Returns:
        One FoundSubmission per student folder, sorted by folder name. Raises LabGradingError when `folder` is not a
        folder or two folders map to the same student id.
    """
    if not folder.is_dir():
        raise LabGradingError(
            f"{folder} is not a folder: give the folder holding one <student_id>/ folder per student "
            f"(`dora-lab collect` writes them to <course>/{SUBMITTED_DIRECTORY}/)."
        )
    found = [_find_one(entry) for entry in sorted(folder.iterdir()) if _is_student_folder(entry)]
    ids = [submission.student_id for submission in found]
    for student_id in ids:
        if ids.count(student_id) > 1:
            raise LabGradingError(f"two folders map to the student id {student_id!r}: rename one of them.")
    return found


def regular_file(path: Path) -> bool:
    """Tell whether `path` is a file and not a link (links in a submission are never followed)."""
    return path.is_file() and not path.is_symlink()


def _is_student_folder(entry: Path) -> bool:
    return not entry.name.startswith(".") and (entry.is_symlink() or entry.is_dir())


def _find_one(folder: Path) -> FoundSubmission:
    """Find one student's notebook and submission time (see find_submissions for the rules)."""
    problems = []
    student_id = folder.name
    if not _STUDENT_ID.match(student_id):
        student_id = re.sub(r"[^A-Za-z0-9_.@-]", "_", folder.name).lstrip("._-")[:64] or "unnamed"
        problems.append(f"folder name {folder.name!r} is not a usable student id; graded as {student_id!r}")
    if folder.is_symlink():
        problems.append(f"{folder.name}/ is a link (links are not followed): nothing graded")
        return FoundSubmission(student_id, None, None, problems)
    search = folder
    collected = folder / ASSIGNMENT
    if collected.is_symlink():
        problems.append(f"{ASSIGNMENT}/ is a link (links are not followed)")
    elif collected.is_dir():
        search = collected
        ignored = _notebooks_in(folder)
        if ignored:
            problems.append(
                f"graded {ASSIGNMENT}/ (nbgrader's layout); ignored {', '.join(path.name for path in ignored)} beside it"
            )
    candidates = _notebooks_in(search)
    expected = search / f"{NOTEBOOK}.ipynb"
    where = f"{ASSIGNMENT}/" if search == collected else ""
    if expected in candidates:
        chosen = expected
    elif len(candidates) == 1:
        chosen = candidates[0]
        problems.append(f"notebook named {where}{chosen.name}, graded as {NOTEBOOK}.ipynb")
    elif candidates:
        problems.append(
            f"no {where}{NOTEBOOK}.ipynb and {len(candidates)} other notebooks: cannot tell which to grade"
        )
        return FoundSubmission(student_id, None, None, problems)
    else:
        problems.append(
            f"no notebook submitted (expected {NOTEBOOK}.ipynb or {ASSIGNMENT}/{NOTEBOOK}.ipynb in {folder.name}/)"
        )
        return FoundSubmission(student_id, None, None, problems)
    if not regular_file(chosen):
        problems.append(f"{where}{chosen.name} is not a regular file (links are not followed)")
        return FoundSubmission(student_id, None, None, problems)
    return FoundSubmission(student_id, chosen, _timestamp(chosen.parent, problems), problems)


def _notebooks_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix == ".ipynb" and not path.name.startswith("."))


def _timestamp(folder: Path, problems: list[str]) -> str | None:
    """Return nbgrader's timestamp.txt text in `folder` when it is one nbgrader can read; else None (with a note)."""
    from nbgrader.utils import parse_utc

    path = folder / TIMESTAMP_FILE
    if not path.exists() and not path.is_symlink():
        return None
    if not regular_file(path):
        problems.append(f"{TIMESTAMP_FILE} is not a regular file: graded without a submission time")
        return None
    text = path.read_bytes()[:200].decode("utf-8", errors="replace").strip()
    try:
        parse_utc(text)
    except (ValueError, OverflowError, TypeError):
        problems.append(f"{TIMESTAMP_FILE} holds {text[:40]!r}, not a time: graded without a submission time")
        return None
    return text
