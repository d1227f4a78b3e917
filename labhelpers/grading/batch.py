"""Grade a class: find the submissions, grade each in a worker (several at once), keep grades and feedback current.

Grading resumes: a submission whose notebook, instructor source and lab version are unchanged since it was graded is
not graded again, and grades.csv and the feedback are written as submissions finish, so a run stopped half-way (Ctrl-C,
SIGTERM, a lost session) loses only the submissions in progress — the same command finishes the class, with the same
grades as a run from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import nbformat

from labhelpers.config import get_config
from labhelpers.course import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import graded_cells
from labhelpers.grading.course import course_config, generate_assignment
from labhelpers.grading.exchange import find_submissions
from labhelpers.grading.export import write_grades_csv
from labhelpers.grading.sandbox import MAX_SLOTS, problem
from labhelpers.grading.worker import Result, Run, result_path, zero_in_gradebook

MAX_NOTEBOOK_BYTES = 20 * 2**20
STATUS_FILE = "status.json"
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


@dataclass
class Submission:
    """One student of SUBMISSIONS_DIR and what finding their notebook said."""

    student_id: str
    notebook: Path | None = None
    timestamp: str | None = None
    status: list[str] = field(default_factory=list)
    exchange_files: list[Path] = field(default_factory=list)
    """nbgrader's timestamp.txt and submission_secret.txt, kept beside the notebook (`dora-lab return` needs them)."""


def collect(submissions_dir: Path) -> list[Submission]:
    """List the submissions of a folder (plain or nbgrader's collected layout), keeping only valid notebooks."""
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


def lab_version() -> str:
    """Return the grading code's version: the package's, and a digest of its sources (a changed check regrades)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return f"{version('labhelpers')}+{digest.hexdigest()[:12]}"


def prepare_course(out_dir: Path, source_notebook: Path) -> tuple[Path, Path]:
    """Create OUT_DIR's private nbgrader course (source, release with checksums, gradebook); reuse it when current.

    Returns:
        (the course folder, the gradebook file).
    """
    if not source_notebook.is_file():
        raise LabGradingError(
            f"No instructor notebook at {source_notebook}: grading needs the nbgrader source (solutions/)."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise LabGradingError(f"--out {out_dir} is a file: give a folder (it is created if missing).")
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)  # only the grader: the gradebook, the secret and every student's work are in here
    course = out_dir / "course"
    target = course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    db_path = out_dir / "gradebook.db"
    release = course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    if (
        target.is_file()
        and release.is_file()
        and db_path.is_file()
        and target.read_bytes() == source_notebook.read_bytes()
    ):
        return course, db_path
    graded_cells(
        nbformat.read(source_notebook, as_version=4)
    )  # an unreadable test cell stops here, before any grading
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_notebook, target)
    generate_assignment(course_config(course, db_path), use_database=True)
    import sqlite3

    with sqlite3.connect(db_path) as connection:  # workers write to the gradebook while others read it
        connection.execute("PRAGMA journal_mode=WAL")
    (course / "nbgrader_config.py").write_text(
        "# nbgrader settings of this graded copy (e.g. `nbgrader formgrader` here for the written answers).\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        "c.CourseDirectory.source_directory = 'solutions'\n"
        "c.CourseDirectory.release_directory = 'notebooks'\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(db_path)!r}\n"
    )
    return course, db_path


def _key(submission: Submission, source: bytes, lab: str) -> str:
    """What a grade depends on: the notebook, its submission time, the instructor's source, the lab's version."""
    digest = hashlib.sha256(submission.notebook.read_bytes() if submission.notebook else b"")
    digest.update(f"\0{submission.timestamp}\0{lab}\0".encode())
    digest.update(source)
    return digest.hexdigest()


def _stage(course: Path, submission: Submission) -> None:
    """Put the student's notebook, exactly as submitted, into the course's submitted/ folder (nbgrader's layout)."""
    for area in ("submitted", "tidied", "autograded", "feedback"):
        shutil.rmtree(course / area / submission.student_id, ignore_errors=True)
    result_path(course, submission.student_id).unlink(missing_ok=True)
    folder = course / "submitted" / submission.student_id / ASSIGNMENT
    folder.mkdir(parents=True)
    if submission.notebook is not None:
        shutil.copyfile(submission.notebook, folder / f"{NOTEBOOK}.ipynb")
    for path in submission.exchange_files:
        shutil.copyfile(path, folder / path.name)
    if submission.timestamp and not (folder / "timestamp.txt").is_file():
        (folder / "timestamp.txt").write_text(submission.timestamp)


class _Slot:
    """One worker process and the submission it is grading."""

    def __init__(self, index: int, run: Run, course: Path):
        self.index = index
        run_file = course / "jobs" / f"run-{index}.json"
        run_file.parent.mkdir(exist_ok=True)
        run_file.write_text(json.dumps(asdict(run)))
        log = open(course / "logs" / f"worker-{index}.log", "a")  # noqa: SIM115 - the worker's whole life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labhelpers.grading.worker", str(run_file)],
            cwd=course, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.student: str | None = None
        self.started = 0.0
        self.ready = False

    def give(self, student_id: str) -> None:
        self.student, self.started = student_id, time.monotonic()
        self.process.stdin.write(student_id + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """Kill the worker and everything it started (its sandboxes die with it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


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
    from tqdm.auto import tqdm

    submissions_dir, out_dir = submissions_dir.resolve(), out_dir.resolve()
    submissions = collect(submissions_dir)
    course, db_path = prepare_course(out_dir, source_notebook)
    (course / "logs").mkdir(exist_ok=True)
    lab, source = lab_version(), source_notebook.read_bytes()
    statuses = _read_statuses(out_dir)
    statuses = {s.student_id: statuses[s.student_id] for s in submissions if s.student_id in statuses}
    todo = []
    for submission in submissions:
        key = _key(submission, source, lab)
        previous = statuses.get(submission.student_id, {})
        if previous.get("key") == key and (
            submission.notebook is None or result_path(course, submission.student_id).is_file()
        ):
            continue  # graded before, nothing changed
        _stage(course, submission)
        if submission.notebook is None:
            zero_in_gradebook(db_path, course, submission.student_id)
            statuses[submission.student_id] = {"status": submission.status, "key": key}
        else:
            todo.append((submission, key))
    _write_statuses(out_dir, statuses)
    done_before = len(submissions) - len(todo)
    if todo:
        trouble = problem()
        if trouble:
            warnings.warn(trouble, stacklevel=2)
        hidden = [str(out_dir), str(submissions_dir), str(source_notebook.resolve().parent.parent)]
        _grade_all(
            todo,
            course,
            db_path,
            out_dir,
            hidden,
            options,
            statuses,
            progress=progress,
            total=len(submissions),
            done_before=done_before,
            tqdm=tqdm,
        )
    publish_feedback(out_dir)
    return write_grades_csv(out_dir)


def _grade_all(
    todo, course, db_path, out_dir, hidden, options, statuses, *, progress, total, done_before, tqdm
) -> None:
    """Hand the submissions to `options.jobs` workers; record each result as it comes; stop cleanly when told to."""
    jobs = max(1, min(options.jobs, MAX_SLOTS, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    scratch_root = Path(tempfile.mkdtemp(prefix="dora-grading-"))
    os.chmod(scratch_root, 0o711)
    data_dir = get_config().data_dir
    hidden = [*hidden, str(scratch_root)]
    runs = [
        Run(
            course_root=str(course),
            db_path=str(db_path),
            out_dir=str(out_dir),
            scratch_root=str(scratch_root),
            slot=slot,
            timeout_cell=options.timeout_cell,
            timeout_submission=options.timeout_submission,
            memory_bytes=options.memory_bytes,
            threads=threads,
            data_dir=str(data_dir) if data_dir else None,
            hide=hidden,
        )  # fmt: skip
        for slot in range(jobs)
    ]
    waiting = list(todo)
    keys = {submission.student_id: key for submission, key in todo}
    extra = {submission.student_id: submission.status for submission, _ in todo}
    slots = [_Slot(slot, runs[slot], course) for slot in range(jobs)]
    bar = tqdm(total=total, initial=done_before, desc="grading", unit="student", disable=not progress)
    stopping: list[int] = []

    def on_signal(signum, frame):
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    last_csv = time.monotonic()
    try:
        while (waiting or any(slot.student for slot in slots)) and not stopping:
            for slot in slots:
                if slot.ready and slot.student is None and waiting:
                    slot.give(waiting.pop(0)[0].student_id)
            streams = {slot.process.stdout: slot for slot in slots if slot.process.poll() is None}
            readable, _, _ = select.select(list(streams), [], [], 0.5)
            for stream in readable:
                slot = streams[stream]
                line = stream.readline()
                message = _message(line)
                if message.get("ready"):
                    slot.ready = True
                elif message.get("done") and message["done"] == slot.student:
                    _record(slot.student, course, statuses, keys, extra)
                    slot.student = None
                    bar.update(1)
            for slot in slots:
                dead = slot.process.poll() is not None
                late = slot.student and time.monotonic() - slot.started > options.timeout_submission
                if dead or late:
                    if slot.student:
                        reason = (
                            f"submission time limit ({options.timeout_submission} s) exceeded: 0 points"
                            if late
                            else "grader error (the worker stopped): 0 points, please review"
                        )
                        zero_in_gradebook(db_path, course, slot.student)
                        statuses[slot.student] = {"status": extra[slot.student] + [reason], "key": keys[slot.student]}
                        bar.update(1)
                    slot.stop()
                    slots[slot.index] = _Slot(slot.index, runs[slot.index], course)
            if time.monotonic() - last_csv > CSV_EVERY_SECONDS:
                _write_statuses(out_dir, statuses)
                write_grades_csv(out_dir)
                last_csv = time.monotonic()
    finally:
        for slot in slots:
            if slot.student and stopping:
                statuses.pop(slot.student, None)  # not finished: graded again on the next run
            slot.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        shutil.rmtree(scratch_root, ignore_errors=True)
        _write_statuses(out_dir, statuses)
        if stopping:
            publish_feedback(out_dir)
            write_grades_csv(out_dir)
    if stopping:
        done = sum(1 for entry in statuses.values() if "key" in entry)
        raise GradingStopped(
            f"stopped by signal {stopping[0]} with {done} of {total} submissions graded; grades.csv and feedback/ hold "
            f"those. Run the same `dora-lab grade` command again to grade the rest."
        )


class GradingStopped(LabGradingError):
    """The run was stopped (Ctrl-C, SIGTERM): what was done is saved, and the same command resumes."""


def _message(line: str) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _record(student_id: str, course: Path, statuses: dict, keys: dict, extra: dict) -> None:
    path = result_path(course, student_id)
    result = (
        Result(**json.loads(path.read_text())) if path.is_file() else Result(student_id, ["grader error: no result"])
    )
    statuses[student_id] = {
        "status": extra[student_id] + result.status,
        "seconds": result.seconds,
        "phases": result.phases,
        "key": keys[student_id],
    }


def _read_statuses(out_dir: Path) -> dict[str, dict]:
    path = out_dir / STATUS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _write_statuses(out_dir: Path, statuses: dict) -> None:
    tmp = out_dir / f"{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(statuses, indent=1, sort_keys=True))
    tmp.replace(out_dir / STATUS_FILE)


def publish_feedback(out_dir: Path) -> None:
    """Copy nbgrader's feedback to OUT_DIR/feedback/<student_id>/dora_lab.html (a short page when there is none)."""
    course = out_dir / "course"
    statuses = _read_statuses(out_dir)
    target_root = out_dir / "feedback"
    shutil.rmtree(target_root, ignore_errors=True)
    for student_id, entry in sorted(statuses.items()):
        target = target_root / student_id / f"{NOTEBOOK}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = course / "feedback" / student_id / ASSIGNMENT / f"{NOTEBOOK}.html"
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in entry.get("status", []))
            target.write_text(
                f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{NOTEBOOK} feedback</title></head><body>"
                f"<h1>{NOTEBOOK}: 0 points</h1><p>Your submission could not be graded:</p><ul>{items}</ul></body></html>"
            )


def regenerate_feedback(out_dir: Path) -> None:
    """Rebuild every student's feedback from the gradebook (after manual grading of the written answers)."""
    from labhelpers.grading.course import nbgrader_api
    from labhelpers.grading.worker import TIDIED

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
