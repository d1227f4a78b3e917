"""Grade a class: collect submissions, grade each in its own worker (in parallel), write grades and feedback."""

from __future__ import annotations

import html
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import (
    ASSIGNMENT,
    NOTEBOOK,
    SOURCE_NOTEBOOK,
    course_config,
    generate_assignment,
)
from labhelpers.grading.export import write_grades_csv
from labhelpers.grading.sandbox import MAX_SLOTS, kill_user_processes, probe, run_uid_base
from labhelpers.grading.worker import Job, Result, result_path, zero_in_gradebook

_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_NOTEBOOK_BYTES = 20 * 2**20
STATUS_FILE = "status.json"


@dataclass(frozen=True)
class GradingOptions:
    """Limits of one grading run (the CLI's options).

    Attributes:
        jobs: submissions graded at the same time.
        timeout_cell: seconds one cell may run.
        timeout_submission: seconds one submission may take in all (autograde, re-check, feedback).
        memory_bytes: address-space cap of each student process.
    """

    jobs: int = 1
    timeout_cell: int = 120
    timeout_submission: int = 600
    memory_bytes: int = 6 * 2**30


@dataclass
class Submission:
    """One folder of SUBMISSIONS_DIR and what collecting it found."""

    student_id: str
    notebook: Path | None = None
    status: list[str] = field(default_factory=list)


def collect(submissions_dir: Path) -> list[Submission]:
    """List <student_id>/<notebook>.ipynb submissions, keeping only regular, readable notebook files.

    Args:
        submissions_dir: one folder per student.

    Returns:
        One Submission per student folder, sorted by id; `notebook` is None when there is nothing to grade.
    """
    if not submissions_dir.is_dir():
        raise LabGradingError(
            f"{submissions_dir} is not a folder: give the folder holding one <student_id>/ folder per student."
        )
    submissions = []
    for folder in sorted(submissions_dir.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        submission = Submission(student_id=folder.name)
        if not _STUDENT_ID.match(folder.name):
            submission.student_id = re.sub(r"[^A-Za-z0-9_.@-]", "_", folder.name).lstrip("._-")[:64] or "unnamed"
            submission.status.append(
                f"folder name {folder.name!r} is not a usable student id; graded as {submission.student_id!r}"
            )
        candidates = sorted(
            path for path in folder.iterdir() if path.suffix == ".ipynb" and not path.name.startswith(".")
        )
        expected = folder / f"{NOTEBOOK}.ipynb"
        if expected in candidates:
            chosen = expected
        elif len(candidates) == 1:
            chosen = candidates[0]
            submission.status.append(f"notebook named {chosen.name}, graded as {NOTEBOOK}.ipynb")
        elif candidates:
            submission.status.append(
                f"no {NOTEBOOK}.ipynb and {len(candidates)} other notebooks: cannot tell which to grade"
            )
            chosen = None
        else:
            submission.status.append(f"no notebook submitted (expected {NOTEBOOK}.ipynb)")
            chosen = None
        if chosen is not None:
            problem = _unreadable(chosen)
            if problem:
                submission.status.append(problem)
            else:
                submission.notebook = chosen
        submissions.append(submission)
    ids = [s.student_id for s in submissions]
    for submission in submissions:
        if ids.count(submission.student_id) > 1:
            raise LabGradingError(f"two folders map to the student id {submission.student_id!r}: rename one of them.")
    return submissions


def _unreadable(path: Path) -> str:
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


def prepare_course(out_dir: Path, source_notebook: Path) -> tuple[Path, Path]:
    """Create OUT_DIR's private nbgrader course (source, release with checksums, gradebook).

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
    # Only the grader (root) may enter: sandboxed student code can read neither the gradebook nor classmates' work.
    os.chmod(out_dir, 0o700)
    course = out_dir / "course"
    target = course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_notebook, target)
    db_path = out_dir / "gradebook.db"
    generate_assignment(course_config(course, db_path), use_database=True)
    # Concurrent workers write to the gradebook: WAL lets them read while another writes.
    import sqlite3

    with sqlite3.connect(db_path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    (course / "nbgrader_config.py").write_text(
        "# nbgrader settings of this graded copy (e.g. `nbgrader formgrader` here for the written answers).\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = 'dora-lab'\n"
        "c.CourseDirectory.source_directory = 'solutions'\n"
        "c.CourseDirectory.release_directory = 'notebooks'\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(db_path)!r}\n"
    )
    return course, db_path


def _stage(course: Path, submission: Submission) -> None:
    """Put the student's notebook (alone) into the course's submitted/ folder, clearing earlier runs."""
    for area in ("submitted", "autograded", "feedback"):
        shutil.rmtree(course / area / submission.student_id, ignore_errors=True)
    result_path(course, submission.student_id).unlink(missing_ok=True)
    folder = course / "submitted" / submission.student_id / ASSIGNMENT
    folder.mkdir(parents=True)
    if submission.notebook is not None:
        shutil.copyfile(submission.notebook, folder / f"{NOTEBOOK}.ipynb")


def _run_worker(job: Job, course: Path, timeout: float) -> Result:
    """Run worker.py for one job under the per-submission time limit; kill it and its sandbox user when over."""
    job_file = course / "jobs" / f"{job.student_id}.json"
    job_file.parent.mkdir(exist_ok=True)
    job_file.write_text(json.dumps(asdict(job)))
    log_file = course / "logs" / f"{job.student_id}.log"
    log_file.parent.mkdir(exist_ok=True)
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "labhelpers.grading.worker", str(job_file)],
            cwd=course,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kill_user_processes(job.uid_base + job.slot if job.switch_user else None)
            shutil.rmtree(Path(job.scratch_root) / f"slot-{job.slot}", ignore_errors=True)
            return Result(
                student_id=job.student_id, status=[f"submission time limit ({timeout:.0f} s) exceeded: 0 points"]
            )
    path = result_path(course, job.student_id)
    if process.returncode != 0 or not path.is_file():
        return Result(student_id=job.student_id, status=[f"grader error (see {log_file}): 0 points"])
    return Result(**json.loads(path.read_text()))


def grade(
    submissions_dir: Path,
    out_dir: Path,
    options: GradingOptions = GradingOptions(),
    source_notebook: Path = SOURCE_NOTEBOOK,
    progress: bool = True,
) -> Path:
    """Autograde every submission with nbgrader in sandboxes; write grades.csv, feedback/ and the gradebook.

    Args:
        submissions_dir: holds <student_id>/dora_lab.ipynb.
        out_dir: receives grades.csv, feedback/<student_id>/dora_lab.html, gradebook.db and the nbgrader course.
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
    scratch_root = Path(tempfile.mkdtemp(prefix="dora-lab-grading-"))
    os.chmod(scratch_root, 0o711)
    # Student code cannot see the instructor's folders or classmates' originals (where the kernel allows it).
    hide = [
        str(p)
        for p in (out_dir, submissions_dir, source_notebook.resolve().parent.parent, PROJECT_ROOT / "solutions")
        if p.is_dir() and not _contains_needed(p)
    ]
    threads = max(1, (os.cpu_count() or 1) // max(1, min(options.jobs, MAX_SLOTS - 1)))
    problem = probe(scratch_root)
    switch_user = not problem
    if problem:
        warnings.warn(
            f"Student code cannot run as a separate user here ({problem}): it runs as you, with the limits "
            "but without write protection. Grade as root for full isolation.",
            stacklevel=2,
        )
    statuses: dict[str, dict] = {}
    gradable = []
    jobs = max(1, min(options.jobs, MAX_SLOTS - 1))
    uid_base = run_uid_base()
    # One sandbox user per concurrent slot; a slot's processes and files are wiped before its next submission.
    free_slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        free_slots.put(slot)
    for submission in submissions:
        _stage(course, submission)
        if submission.notebook is None:
            zero_in_gradebook(db_path, course, submission.student_id)
            statuses[submission.student_id] = {"status": submission.status, "review": []}
        else:
            gradable.append(submission)

    def work(submission: Submission) -> Result:
        slot = free_slots.get()
        try:
            return _work(slot, submission)
        finally:
            free_slots.put(slot)

    def _work(slot: int, submission: Submission) -> Result:
        deadline = time.time() + options.timeout_submission
        job = Job(
            course_root=str(course),
            db_path=str(db_path),
            student_id=submission.student_id,
            slot=slot,
            scratch_root=str(scratch_root),
            timeout_cell=options.timeout_cell,
            deadline=deadline,
            memory_bytes=options.memory_bytes,
            threads=threads,
            hide=hide,
            switch_user=switch_user,
            uid_base=uid_base,
        )
        try:
            result = _run_worker(job, course, options.timeout_submission)
        except Exception as error:  # one submission's failure never stops the batch
            result = Result(
                student_id=submission.student_id, status=[f"grader error ({type(error).__name__}: {error}): 0 points"]
            )
        if not result_path(course, submission.student_id).is_file():
            zero_in_gradebook(db_path, course, submission.student_id)
        result.status = submission.status + result.status
        return result

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(work, submission) for submission in gradable]
            for future in tqdm(
                as_completed(futures), total=len(futures), desc="grading", unit="student", disable=not progress
            ):
                result = future.result()
                statuses[result.student_id] = {
                    "status": result.status,
                    "review": result.review,
                    "seconds": result.seconds,
                }
    finally:
        # Also on Ctrl-C: no student process outlives the run.
        if switch_user:
            for slot in range(jobs):
                kill_user_processes(uid_base + slot)
        shutil.rmtree(scratch_root, ignore_errors=True)
    (out_dir / STATUS_FILE).write_text(json.dumps(statuses, indent=1, sort_keys=True))
    publish_feedback(out_dir)
    return write_grades_csv(out_dir)


def _contains_needed(path: Path) -> bool:
    """True when hiding `path` would hide what student code must read (Python, the venv, labhelpers, SST-2)."""
    from labhelpers.grading.sandbox import needed_paths

    resolved = str(path.resolve())
    return any(needed == resolved or needed.startswith(resolved + os.sep) for needed in needed_paths())


def publish_feedback(out_dir: Path) -> None:
    """Copy nbgrader's feedback to OUT_DIR/feedback/<student_id>/dora_lab.html (a short page when there is none)."""
    course = out_dir / "course"
    statuses = json.loads((out_dir / STATUS_FILE).read_text()) if (out_dir / STATUS_FILE).is_file() else {}
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

    out_dir = out_dir.resolve()
    course = out_dir / "course"
    api = nbgrader_api(course_config(course, out_dir / "gradebook.db"))
    for folder in sorted((course / "autograded").iterdir()) if (course / "autograded").is_dir() else []:
        result = api.generate_feedback(ASSIGNMENT, folder.name, force=True)
        if not result["success"]:
            raise LabGradingError(f"nbgrader generate_feedback failed for {folder.name}:\n{result.get('error', '')}")
    publish_feedback(out_dir)
