"""Grade one submission: nbgrader autograde in the sandbox, the clean re-check, then nbgrader feedback.

Runs in its own process (``python -m labhelpers.grading.worker JOB.json``) so that the batch can hold it to the
per-submission time limit and kill it without losing the others.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from labhelpers.grading.course import ASSIGNMENT, NOTEBOOK, course_config, grade_cells, nbgrader_api, setup_sources
from labhelpers.grading.execute import SandboxedExecute
from labhelpers.grading.sandbox import Sandbox, SandboxKernelManager, make_sandbox, remove_sandbox

# Answer code that reaches for the grading machinery is listed for the instructor to read (the score is unchanged).
_REVIEW_WORDS = (
    "allclose",
    "torch.testing",
    "assert_close",
    "labhelpers.checks",
    "check_",
    "builtins",
    "sys.modules",
    "__dict__",
    "setattr(",
    "_getframe",
    "inspect.",
    "ctypes",
    "gc.get",
    "threading",
    "signal.",
    "os._exit",
    "sys.exit",
    "subprocess",
    "/proc",
    "nbgrader",
)


@dataclass
class Job:
    """What the batch asks a worker to do for one student (serialised as JSON)."""

    course_root: str
    db_path: str
    student_id: str
    slot: int
    scratch_root: str
    timeout_cell: int
    deadline: float
    memory_bytes: int
    threads: int
    hide: list[str] = field(default_factory=list)
    switch_user: bool = True
    uid_base: int = 61000


@dataclass
class Result:
    """What happened to one submission, beyond the scores the gradebook holds."""

    student_id: str
    status: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    recheck_failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def result_path(course_root: Path, student_id: str) -> Path:
    return course_root / "results" / f"{student_id}.json"


def tampering_report(course_root: Path, student_id: str, source: nbformat.NotebookNode) -> list[str]:
    """Say which instructor cells of the submission differ from the release or are gone (nbgrader restored them)."""
    submitted = course_root / "submitted" / student_id / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    released = nbformat.read(course_root / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    mine = {
        cell.metadata.get("nbgrader", {}).get("grade_id"): cell
        for cell in nbformat.read(submitted, as_version=4).cells
    }
    instructor = _instructor_ids(source)
    edited, deleted = [], []
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in instructor:
            if grade_id not in mine:
                deleted.append(grade_id)
            elif mine[grade_id].source != cell.source or mine[grade_id].cell_type != cell.cell_type:
                edited.append(grade_id)
    report = []
    if edited:
        report.append("edited instructor cells restored: " + ", ".join(edited))
    if deleted:
        report.append("deleted instructor cells restored: " + ", ".join(deleted))
    return report


def _instructor_ids(source: nbformat.NotebookNode) -> set[str]:
    ids = set()
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") and not meta.get("solution"):
            ids.add(meta["grade_id"])
    return ids


def answer_sources(notebook: nbformat.NotebookNode, source: nbformat.NotebookNode) -> list[str]:
    """Return the student's code cells (answer cells and cells they added), in order; never the instructor's."""
    instructor = _instructor_ids(source)
    answers = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") not in instructor:
            answers.append(cell.source)
    return answers


def recheck(
    job: Job, sandbox, notebook: nbformat.NotebookNode, source: nbformat.NotebookNode, grade_ids: list[str]
) -> tuple[dict, list[str], str]:
    """Run verify.py sandboxed on the student's definitions and the instructor's test cells `grade_ids`.

    Returns:
        ({grade_id: (passed, message)}, notes about the answer cells, why it stopped early or "").
    """
    nonce = secrets.token_hex(16)
    tests = [
        {"grade_id": cell.grade_id, "source": cell.source}
        for cell in grade_cells(source)
        if cell.autograded and cell.grade_id in grade_ids
    ]
    request = {
        "nonce": nonce,
        "timeout": job.timeout_cell,
        "preload": ["labhelpers.checks"],
        "answers": answer_sources(notebook, source),
        "setup": setup_sources(source),
        "tests": tests,
    }
    budget = max(5.0, job.deadline - time.time() - 10)
    command = sandbox.command([sys.executable, "-P", "-m", "labhelpers.grading.verify"])
    results, notes, stopped = {}, [], ""
    try:
        completed = subprocess.run(command, input=json.dumps(request), capture_output=True, text=True, timeout=budget)
        lines, code = completed.stdout.splitlines(), completed.returncode
    except subprocess.TimeoutExpired as error:
        lines, code = (error.stdout or b"").decode(errors="replace").splitlines(), None
    done = False
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("nonce") != nonce:
            continue
        if "setup_error" in record:
            notes.append(f"the instructor's setup cells failed in the clean re-check: {record['setup_error']}")
        elif "notes" in record:
            notes = [str(note) for note in record["notes"]][:10]
        elif "grade_id" in record and record["grade_id"] not in results:
            results[record["grade_id"]] = (record.get("passed") is True, str(record.get("message", "")))
        elif record.get("done"):
            done = True
    if not done:
        stopped = "the clean re-check stopped early" + (
            f" (exit code {code})" if code is not None else " (time limit)"
        )
    return results, notes, stopped


def _fail_recheck_in_gradebook(job: Job, failed: dict[str, str]) -> None:
    from nbgrader.api import Gradebook

    config = course_config(Path(job.course_root), Path(job.db_path))
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gradebook:
        for grade_id in failed:
            grade = gradebook.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, job.student_id)
            grade.auto_score = 0
        gradebook.db.commit()


def zero_in_gradebook(db_path: Path, course_root: Path, student_id: str) -> None:
    """Record a submission that could not be graded with every cell at 0 (as nbgrader does for a missing notebook)."""
    import warnings

    from nbgrader.api import Gradebook

    config = course_config(course_root, db_path)
    with (
        warnings.catch_warnings(),
        Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gradebook,
    ):
        # nbgrader's own submission creation triggers harmless SQLAlchemy autoflush warnings.
        warnings.simplefilter("ignore")
        gradebook.update_or_create_student(student_id)
        submission = gradebook.update_or_create_submission(ASSIGNMENT, student_id)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.manual_score = None
                grade.needs_manual_grade = False
        gradebook.db.commit()


def phase_a_scores(job: Job) -> dict[str, float]:
    """Return the autograder's score of every graded cell of the student's submission in the gradebook."""
    from nbgrader.api import Gradebook

    config = course_config(Path(job.course_root), Path(job.db_path))
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gradebook:
        notebook = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, job.student_id)
        return {grade.name: (grade.auto_score or 0.0) for grade in notebook.grades}


def _new_sandbox(job: Job) -> Sandbox:
    return make_sandbox(
        Path(job.scratch_root),
        job.slot,
        switch_user=job.switch_user,
        uid_base=job.uid_base,
        memory_bytes=job.memory_bytes,
        threads=job.threads,
        hide=tuple(Path(p) for p in job.hide),
    )


def grade_submission(job: Job) -> Result:
    """Autograde, re-check and write feedback for one student whose notebook is in submitted/."""
    started = time.time()
    course_root = Path(job.course_root)
    result = Result(student_id=job.student_id)
    source = nbformat.read(course_root / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    sandbox = _new_sandbox(job)
    SandboxKernelManager.sandbox = sandbox
    try:
        config = course_config(course_root, Path(job.db_path))
        configure_autograde(config, job.timeout_cell)
        api = nbgrader_api(config)
        outcome = api.autograde(ASSIGNMENT, job.student_id, force=True, create=True)
        print(f"autograde: {time.time() - started:.1f} s", flush=True)
        result.status += SandboxedExecute.last_events
        log = outcome.get("log", "")
        result.status += tampering_report(course_root, job.student_id, source)
        if not outcome["success"]:
            print(log, outcome.get("error", ""), flush=True)
            result.status.append("nbgrader autograde failed (see the log in course/logs/): 0 points")
            zero_in_gradebook(Path(job.db_path), course_root, job.student_id)
            return result
        autograded = _autograded(course_root, job.student_id)
        scores = phase_a_scores(job)
        answers = answer_sources(autograded, source)
        result.review = sorted({word for word in _REVIEW_WORDS for text in answers if word in text})
        # Only tests that scored can be wrongly won: the re-check runs those (none: nothing to re-check).
        scored = [
            cell.grade_id for cell in grade_cells(source) if cell.autograded and scores.get(cell.grade_id, 0) > 0
        ]
        failed, notes = {}, []
        if scored:
            # A fresh scratch folder and no process left from the notebook run: nothing it wrote can reach the re-check.
            remove_sandbox(sandbox)
            sandbox = _new_sandbox(job)
            checks, notes, stopped = recheck(job, sandbox, autograded, source, scored)
            print(f"clean re-check done: {time.time() - started:.1f} s", flush=True)
            if stopped:
                result.status.append(stopped)
                result.status += [note for note in notes if note.startswith("the instructor's setup")]
            for grade_id in scored:
                passed, message = checks.get(grade_id, (False, "no result from the clean re-check"))
                if not passed:
                    failed[grade_id] = message
        if failed:
            _fail_recheck_in_gradebook(job, failed)
            _annotate(course_root, job.student_id, failed)
            result.recheck_failed = failed
            result.status.append("failed the clean re-check: " + ", ".join(failed))
            result.status += [note for note in notes if note not in result.status]
        feedback = api.generate_feedback(ASSIGNMENT, job.student_id, force=True)
        print(f"feedback done: {time.time() - started:.1f} s", flush=True)
        if not feedback["success"]:
            result.status.append("nbgrader generate_feedback failed")
        return result
    finally:
        SandboxKernelManager.sandbox = None
        remove_sandbox(sandbox)
        result.seconds = round(time.time() - started, 1)


def configure_autograde(config, timeout_cell: int) -> None:
    """Set nbgrader autograde up with the sandboxed executor, restored test cells and the cell time limit."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    config.Autograde.autograde_preprocessors = [
        SandboxedExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    config.Execute.timeout = timeout_cell
    config.Execute.startup_timeout = 120
    # Output still in flight after a cell's reply is waited for, never turned into a failure: on a busy machine a
    # slow figure would otherwise fail a passing test (nbgrader raises on an IOPub time-out by default).
    config.Execute.iopub_timeout = 30
    config.Execute.raise_on_iopub_timeout = False
    config.Execute.execute_retries = 0
    # A deleted test cell comes back from the gradebook (and fails if the answer is wrong), never scores by absence.
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.create_student = True


def _autograded_path(course_root: Path, student_id: str) -> Path:
    return course_root / "autograded" / student_id / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def _autograded(course_root: Path, student_id: str) -> nbformat.NotebookNode | None:
    path = _autograded_path(course_root, student_id)
    return nbformat.read(path, as_version=4) if path.is_file() else None


def _annotate(course_root: Path, student_id: str, failed: dict[str, str]) -> None:
    """Add the clean re-check's message to the test cells it failed, so the feedback shows why they scored 0."""
    path = _autograded_path(course_root, student_id)
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in failed:
            text = f"Clean re-check (your definitions only, in a fresh process) failed: {failed[grade_id]}"
            cell.setdefault("outputs", []).append(
                nbformat.v4.new_output("error", ename="CleanRecheckFailed", evalue=text, traceback=[text])
            )
    nbformat.write(notebook, path)


def main() -> None:
    job = Job(**json.loads(Path(sys.argv[1]).read_text()))
    result = grade_submission(job)
    path = result_path(Path(job.course_root), job.student_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=1))


if __name__ == "__main__":
    main()
