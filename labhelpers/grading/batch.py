"""Grade a class: find the submissions, grade each in a worker (several at once), keep grades and feedback current.

Grading resumes: a submission whose notebook, instructor source and lab version are unchanged since it was graded is
not graded again, and grades.csv and the feedback are written as submissions finish, so a run stopped half-way (Ctrl-C,
SIGTERM, a lost session) loses only the submissions in progress — the same command finishes the class, with the same
grades as a run from scratch.

The steps live beside this module: submissions (finding them), course (the graded copy of the nbgrader course),
ledger (status.json: what each grade depends on), pool (the worker processes), worker (grading one submission),
feedback and export (what the student and the instructor read).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK, SUBMITTED_DIRECTORY
from labhelpers.config import get_config
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import graded_cells
from labhelpers.grading.course import course_config, nbgrader_api, prepare_course
from labhelpers.grading.export import write_grades_csv
from labhelpers.grading.feedback import publish_feedback
from labhelpers.grading.ledger import Ledger, LedgerEntry, lab_version, submission_key
from labhelpers.grading.pool import Outcome, WorkerPool
from labhelpers.grading.sandbox import MAX_SLOTS, problem
from labhelpers.grading.submissions import Submission, discover_submissions
from labhelpers.grading.worker import TIDIED, Result, WorkerSettings, result_path, zero_in_gradebook

CSV_EVERY_SECONDS = 30
"""grades.csv is rewritten at least this often while grading (and at the end, and when stopped)."""


@dataclass(frozen=True)
class GradingOptions:
    """Limits of one grading run (the CLI's options).

    Attributes:
        jobs: submissions graded at the same time.
        timeout_cell: seconds one cell (or one check) may run.
        timeout_submission: seconds one submission may take in all.
        memory_bytes: address-space cap of each student process.
    """

    jobs: int = 1
    timeout_cell: int = 120
    timeout_submission: int = 600
    memory_bytes: int = 6 * 2**30


class GradingStopped(LabGradingError):
    """The run was stopped (Ctrl-C, SIGTERM): what was done is saved, and the same command resumes."""


@dataclass
class _ClassRun:
    """One grading run of a class: its folders, limits and ledger.

    Attributes:
        course: the graded copy's course folder.
        db_path: its gradebook.
        out_dir: the grading folder.
        options: the run's limits.
        ledger: status.json, kept current as submissions finish.
        hidden: folders of the grading machine that no feedback may name.
        keys: {student_id: submission_key} of the submissions graded in this run.
    """

    course: Path
    db_path: Path
    out_dir: Path
    options: GradingOptions
    ledger: Ledger
    hidden: list[str]
    keys: dict[str, str] = field(default_factory=dict)


def grade(
    submissions_dir: Path,
    out_dir: Path,
    options: GradingOptions = GradingOptions(),
    source_notebook: Path = SOURCE_NOTEBOOK,
    progress: bool = True,
) -> Path:
    """Autograde every submission in sandboxes; write grades.csv, feedback/ and the gradebook as they finish.

    Args:
        submissions_dir: <student_id>/dora_lab.ipynb, or nbgrader's collected <student_id>/dora/dora_lab.ipynb.
        out_dir: receives grades.csv, feedback/<student_id>/dora_lab.html, gradebook.db, the course's secret and the
            nbgrader course; grading into the same folder again resumes.
        options: parallelism and limits.
        source_notebook: the instructor's nbgrader source notebook.
        progress: show a tqdm bar over students.

    Returns:
        The path of grades.csv.
    """
    submissions_dir, out_dir = submissions_dir.resolve(), out_dir.resolve()
    submissions = discover_submissions(submissions_dir)
    course, db_path = prepare_course(out_dir, source_notebook)
    graded_cells(nbformat.read(source_notebook, as_version=4))  # an unreadable test cell stops here, before grading
    (course / "logs").mkdir(exist_ok=True)
    ledger = Ledger.read(out_dir)
    ledger.keep_only(submission.student_id for submission in submissions)
    hidden = [str(out_dir), str(submissions_dir), str(source_notebook.resolve().parent.parent)]
    run = _ClassRun(course, db_path, out_dir, options, ledger, hidden)
    todo = _stage_changed(run, submissions, source_notebook.read_bytes())
    ledger.write()
    if todo:
        trouble = problem()
        if trouble:
            warnings.warn(trouble, stacklevel=2)
        _grade_in_workers(run, todo, total=len(submissions), progress=progress)
    publish_feedback(out_dir)
    return write_grades_csv(out_dir)


def _stage_changed(run: _ClassRun, submissions: list[Submission], source: bytes) -> list[Submission]:
    """Stage each submission not graded since it changed; record those with nothing to grade; return the others.

    Args:
        run: the class's run (its ledger gets the ungradable submissions, its keys the others').
        submissions: every student of the class.
        source: the instructor's source notebook, as bytes.

    Returns:
        The submissions for the workers, in order.
    """
    lab = lab_version()
    todo = []
    for submission in submissions:
        key = submission_key(submission.notebook, submission.timestamp, source, lab)
        result = result_path(run.course, submission.student_id) if submission.notebook is not None else None
        if run.ledger.is_current(submission.student_id, key, result):
            continue  # graded before, nothing changed
        _stage(run.course, submission)
        if submission.notebook is None:
            zero_in_gradebook(run.db_path, run.course, submission.student_id)
            run.ledger.record(submission.student_id, LedgerEntry(submission.status, key))
        else:
            run.keys[submission.student_id] = key
            todo.append(submission)
    return todo


def _stage(course: Path, submission: Submission) -> None:
    """Put the student's notebook, exactly as submitted, into the course's submitted/ folder (nbgrader's layout)."""
    for area in (SUBMITTED_DIRECTORY, TIDIED, "autograded", "feedback"):
        shutil.rmtree(course / area / submission.student_id, ignore_errors=True)
    result_path(course, submission.student_id).unlink(missing_ok=True)
    folder = course / SUBMITTED_DIRECTORY / submission.student_id / ASSIGNMENT
    folder.mkdir(parents=True)
    if submission.notebook is not None:
        shutil.copyfile(submission.notebook, folder / f"{NOTEBOOK}.ipynb")
    for path in submission.exchange_files:
        shutil.copyfile(path, folder / path.name)
    if submission.timestamp and not (folder / "timestamp.txt").is_file():
        (folder / "timestamp.txt").write_text(submission.timestamp)


def _grade_in_workers(run: _ClassRun, todo: list[Submission], total: int, progress: bool) -> None:
    """Hand the submissions to `options.jobs` workers; record each result as it comes; stop cleanly when told to."""
    from tqdm.auto import tqdm

    jobs = max(1, min(run.options.jobs, MAX_SLOTS, len(todo)))
    scratch_root = Path(tempfile.mkdtemp(prefix="dora-grading-"))
    os.chmod(scratch_root, 0o711)
    pool = WorkerPool(_worker_settings(run, scratch_root, jobs), run.course, run.options.timeout_submission)
    bar = tqdm(total=total, initial=total - len(todo), desc="grading", unit="student", disable=not progress)
    by_id = {submission.student_id: submission for submission in todo}
    try:
        with pool:
            last_csv = time.monotonic()
            for outcomes in pool.passes(list(by_id)):
                for outcome in outcomes:
                    _record(run, by_id[outcome.student_id], outcome)
                    bar.update(1)
                if time.monotonic() - last_csv > CSV_EVERY_SECONDS:
                    run.ledger.write()
                    write_grades_csv(run.out_dir)
                    last_csv = time.monotonic()
    finally:
        if pool.stopped_by is not None:
            for student_id in pool.in_progress:
                run.ledger.forget(student_id)  # not finished: graded again on the next run
        bar.close()
        shutil.rmtree(scratch_root, ignore_errors=True)
        run.ledger.write()
        if pool.stopped_by is not None:
            publish_feedback(run.out_dir)
            write_grades_csv(run.out_dir)
    if pool.stopped_by is not None:
        raise GradingStopped(
            f"stopped by signal {pool.stopped_by} with {len(run.ledger)} of {total} submissions graded; grades.csv and "
            f"feedback/ hold those. Run the same `dora-lab grade` command again to grade the rest."
        )


def _worker_settings(run: _ClassRun, scratch_root: Path, jobs: int) -> list[WorkerSettings]:
    """Return the settings of each of `jobs` workers (the machine's cores shared between them)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    data_dir = get_config().data_dir
    return [
        WorkerSettings(
            course_root=str(run.course),
            db_path=str(run.db_path),
            out_dir=str(run.out_dir),
            scratch_root=str(scratch_root),
            slot=slot,
            timeout_cell=run.options.timeout_cell,
            timeout_submission=run.options.timeout_submission,
            memory_bytes=run.options.memory_bytes,
            threads=threads,
            data_dir=str(data_dir) if data_dir else None,
            hide=[*run.hidden, str(scratch_root)],
        )
        for slot in range(jobs)
    ]


def _record(run: _ClassRun, submission: Submission, outcome: Outcome) -> None:
    """Write one submission's outcome to the ledger (and a lost one's zeros to the gradebook)."""
    student_id, key = submission.student_id, run.keys[submission.student_id]
    if outcome.lost:
        zero_in_gradebook(run.db_path, run.course, student_id)
        run.ledger.record(student_id, LedgerEntry(submission.status + [outcome.lost], key))
        return
    path = result_path(run.course, student_id)
    result = (
        Result(**json.loads(path.read_text())) if path.is_file() else Result(student_id, ["grader error: no result"])
    )
    run.ledger.record(student_id, LedgerEntry(submission.status + result.status, key, result.seconds, result.phases))


def regenerate_feedback(out_dir: Path) -> None:
    """Rebuild every student's feedback from the gradebook (after manual grading of the written answers)."""
    out_dir = out_dir.resolve()
    course = out_dir / "course"
    config = course_config(course, out_dir / "gradebook.db")
    config.CourseDirectory.submitted_directory = TIDIED
    api = nbgrader_api(config)
    for folder in sorted((course / "autograded").iterdir()) if (course / "autograded").is_dir() else []:
        result = api.generate_feedback(ASSIGNMENT, folder.name, force=True)
        if not result["success"]:
            raise LabGradingError(f"nbgrader generate_feedback failed for {folder.name}:\n{result.get('error', '')}")
    publish_feedback(out_dir)
