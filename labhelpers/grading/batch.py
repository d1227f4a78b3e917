"""Grade a class: find the submissions, grade each in a worker (several at once), keep grades and feedback current.

Grading resumes: a submission whose notebook, instructor source and release, grade-deciding code (judges, probes,
scoring: ledger.GRADE_DECIDING) and grading settings are unchanged since it was graded is not graded again, and
grades.csv and the feedback are written as submissions finish, so a run stopped half-way (Ctrl-C, SIGTERM, a lost
session) loses only the submissions in progress — the same command finishes the class, with the same grades as a run
from scratch.

The steps live beside this module: submissions (finding them), course (the graded copy of the nbgrader course),
ledger (status.json: what each grade depends on), pool (the worker processes), worker (grading one submission),
feedback and export (what the student and the instructor read), report (the class report); selection and shards
(part of a class: a shard, some students, some tests with partial).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK, SUBMITTED_DIRECTORY
from labhelpers.config import get_config
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE, course_secret, graded_cells
from labhelpers.grading.course import RELEASE_DIRECTORY, course_config, grade_cells, nbgrader_api, prepare_course
from labhelpers.grading.deadlines import assign_late_penalties
from labhelpers.grading.export import write_grades_csv
from labhelpers.grading.feedback import publish_feedback
from labhelpers.grading.ledger import Ledger, LedgerEntry, lab_version, submission_key
from labhelpers.grading.overrides import check_overrides
from labhelpers.grading.partial import partial_problem
from labhelpers.grading.pool import Outcome, WorkerPool
from labhelpers.grading.report import write_report
from labhelpers.grading.sandbox import MAX_SLOTS, require_isolation, unsandboxed_status
from labhelpers.grading.selection import WHOLE_CLASS, Selection
from labhelpers.grading.shards import ShardRecord, adopt_secret, claim_folder, digest
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
        sandbox: grade in bubblewrap's sandboxes (grading refuses to start where bwrap cannot isolate, saying
            why); False (--no-sandbox) grades without them, and every status and feedback page says so.
        run_notebooks: also run each whole notebook in a sandboxed kernel, beside the probes, so that its feedback
            page shows the outputs of that run (--run-notebooks; about three times the grading time, the same
            grades). False: the feedback page shows the code and the verdicts, without outputs.
    """

    jobs: int = 1
    timeout_cell: int = 120
    timeout_submission: int = 600
    memory_bytes: int = 6 * 2**30
    sandbox: bool = True
    run_notebooks: bool = False

    def decisive(self) -> str:
        """Return the settings a grade and its feedback depend on, as the resume key holds them (not `jobs`, which
        changes neither)."""
        sandbox = "sandbox" if self.sandbox else "--no-sandbox"
        run = ", --run-notebooks" if self.run_notebooks else ""
        return f"cell {self.timeout_cell} s, submission {self.timeout_submission} s, {self.memory_bytes} B, {sandbox}{run}"


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
        selection: the part of the class this run grades.
        lab: the version of what decides a grade, in every submission's key (see _claim).
        keys: {student_id: submission_key} of the submissions graded in this run.
    """

    course: Path
    db_path: Path
    out_dir: Path
    options: GradingOptions
    ledger: Ledger
    hidden: list[str]
    selection: Selection = field(default_factory=Selection)
    lab: str = ""
    keys: dict[str, str] = field(default_factory=dict)


def grade(
    submissions_dir: Path,
    out_dir: Path,
    options: GradingOptions = GradingOptions(),
    source_notebook: Path = SOURCE_NOTEBOOK,
    progress: bool = True,
    selection: Selection = WHOLE_CLASS,
    secret: Path | None = None,
) -> Path:
    """Autograde every submission in sandboxes; write grades.csv, feedback/, the gradebook and the class report.

    Args:
        submissions_dir: <student_id>/dora_lab.ipynb, or nbgrader's collected <student_id>/dora/dora_lab.ipynb.
        out_dir: receives grades.csv, feedback/<student_id>/dora_lab.html, gradebook.db, the course's secret and the
            nbgrader course; grading into the same folder again resumes.
        options: parallelism and limits.
        source_notebook: the instructor's nbgrader source notebook.
        progress: show a tqdm bar over students.
        selection: one shard of the class, or some students or tests to regrade (default: every submission not
            graded since it, or what decides its grade, changed).
        secret: the course's secret to grade with (a grading_secret file, or a grading folder holding one): every
            shard of a class needs the same.

    Returns:
        The path of grades.csv.
    """
    if options.sandbox:
        require_isolation()  # without isolation nothing is graded: the refusal names the case and its fix
    submissions_dir, out_dir = submissions_dir.resolve(), out_dir.resolve()
    submissions = discover_submissions(submissions_dir)
    course, db_path = prepare_course(out_dir, source_notebook)
    notebook = nbformat.read(source_notebook, as_version=4)
    cells = graded_cells(notebook)  # an unreadable test cell stops here, before grading
    (course / "logs").mkdir(exist_ok=True)
    lab = _claim(out_dir, options, selection, secret)
    student_ids = [submission.student_id for submission in submissions]
    check_overrides(out_dir, grade_cells(notebook), student_ids)  # and a wrong line of overrides.csv
    chosen = set(selection.chosen(student_ids, [cell.grade_id for cell in cells]))
    ledger = Ledger.read(out_dir)
    ledger.keep_only(selection.in_shard(student_ids))
    hidden = [str(out_dir), str(submissions_dir), str(source_notebook.resolve().parent.parent)]
    run = _ClassRun(course, db_path, out_dir, options, ledger, hidden, selection, lab)
    todo = _stage_changed(run, [s for s in submissions if s.student_id in chosen], source_notebook.read_bytes())
    ledger.write()
    if todo:
        _grade_in_workers(run, todo, total=len(chosen), progress=progress)
    publish_feedback(out_dir)
    path = write_grades_csv(out_dir)
    write_report(out_dir)
    return path


def _claim(out_dir: Path, options: GradingOptions, selection: Selection, secret: Path | None) -> str:
    """Adopt the course's secret, check that the folder holds this shard (or the whole class) and record it.

    Returns:
        The version of what decides a grade: the lab's (lab_version), the settings and the release.
    """
    if secret is not None:
        adopt_secret(out_dir, secret)
    elif selection.shard is not None and selection.shard.count > 1 and not (out_dir / SECRET_FILE).is_file():
        raise LabGradingError(
            f"--shard {selection.shard}: every shard must draw the same hidden inputs: give each the same "
            "--secret FILE (make it once with `openssl rand -hex 32 > grading_secret`, or give the first shard's "
            "folder)"
        )
    course_secret(out_dir)  # created here when the class has none yet, before any worker reads it
    release = out_dir / "course" / RELEASE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    lab = f"{lab_version()}; {options.decisive()}; release {digest(release.read_bytes())[:12]}"
    claim_folder(out_dir, ShardRecord.of(out_dir, selection.shard, lab) if selection.shard else None)
    return lab


def _stage_changed(run: _ClassRun, submissions: list[Submission], source: bytes) -> list[Submission]:
    """Stage each submission not graded since it changed; record those with nothing to grade; return the others.

    With students or tests chosen (--student, --only), those are graded whether or not anything changed; --only
    grades tests of submissions graded before and unchanged since, and refuses the others.

    Args:
        run: the class's run (its ledger gets the ungradable submissions, its keys the others').
        submissions: the students this run grades.
        source: the instructor's source notebook, as bytes.

    Returns:
        The submissions for the workers, in order.
    """
    # The key's version holds the sandbox setting: a grade from a run without it is not current for a run with it.
    targeted, only = bool(run.selection.students or run.selection.only), bool(run.selection.only)
    todo, problems = [], []
    for submission in submissions:
        key = submission_key(submission.notebook, submission.timestamp, source, run.lab)
        result = result_path(run.course, submission.student_id) if submission.notebook is not None else None
        if not targeted and run.ledger.is_current(submission.student_id, key, result):
            continue  # graded before, nothing changed
        if only:  # some tests again: nothing is staged anew, and a submission without a notebook keeps its zero
            problem = partial_problem(run.course, submission) if submission.notebook is not None else None
            if problem:
                problems.append(problem)
            elif problem is not None:
                run.keys[submission.student_id] = key
                todo.append(submission)
            continue
        _stage(run.course, submission)
        if submission.notebook is None:
            zero_in_gradebook(run.db_path, run.course, submission.student_id)
            run.ledger.record(submission.student_id, LedgerEntry(submission.status, key))
        else:
            run.keys[submission.student_id] = key
            todo.append(submission)
    if problems:
        listed = "; ".join(problems)
        raise LabGradingError(
            f"--only regrades tests of submissions graded before and unchanged since: {listed}. Grade those without "
            "--only."
        )
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
    """Return the settings of each of `jobs` workers (the machine's cores shared between them).

    Each worker runs the probes' sandbox and, with run_notebooks, the notebook's at the same time: each sandbox gets
    its share of the cores.
    """
    sandboxes = 2 if run.options.run_notebooks else 1
    threads = max(1, (os.cpu_count() or 1) // (sandboxes * jobs))
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
            sandboxed=run.options.sandbox,
            only=list(run.selection.only),
            run_notebooks=run.options.run_notebooks,
        )
        for slot in range(jobs)
    ]


def _record(run: _ClassRun, submission: Submission, outcome: Outcome) -> None:
    """Write one submission's outcome to the ledger (and a lost one's zeros to the gradebook)."""
    student_id, key = submission.student_id, run.keys[submission.student_id]
    if outcome.lost:
        zero_in_gradebook(run.db_path, run.course, student_id)
        unsandboxed = [] if run.options.sandbox else [unsandboxed_status()]
        run.ledger.record(student_id, LedgerEntry(submission.status + unsandboxed + [outcome.lost], key))
        return
    path = result_path(run.course, student_id)
    result = (
        Result(**json.loads(path.read_text())) if path.is_file() else Result(student_id, ["grader error: no result"])
    )
    run.ledger.record(student_id, LedgerEntry(submission.status + result.status, key, result.seconds, result.phases))


def regenerate_feedback(out_dir: Path) -> None:
    """Rebuild every student's feedback from the gradebook (after manual grading, or a new due date or extension)."""
    out_dir = out_dir.resolve()
    course = out_dir / "course"
    config = course_config(course, out_dir / "gradebook.db")
    config.CourseDirectory.submitted_directory = TIDIED
    api = nbgrader_api(config)
    folders = sorted((course / "autograded").iterdir()) if (course / "autograded").is_dir() else []
    # Manual grades change the score that the late penalty is a share of.
    assign_late_penalties(course, out_dir / "gradebook.db", [folder.name for folder in folders])
    for folder in folders:
        result = api.generate_feedback(ASSIGNMENT, folder.name, force=True)
        if not result["success"]:
            raise LabGradingError(f"nbgrader generate_feedback failed for {folder.name}:\n{result.get('error', '')}")
    publish_feedback(out_dir)
