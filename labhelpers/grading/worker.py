"""Grade submissions one after another: tidy, probe the definitions in a sandbox, judge, score, feed back.

One worker process per grading slot (``python -m labhelpers.grading.worker SETTINGS.json``) reads one student id per
line on stdin and answers with one line of JSON on stdout when that student is done. It never runs student code
itself: the probes run in a sandbox that sees only labhelpers.probes and labhelpers.seeding, and this process judges
their records and writes the gradebook and the feedback. nbgrader's autograde records the tidied notebook in the
gradebook without running it; with ``run_notebooks`` it also runs the whole notebook in a second sandboxed kernel
(labhelpers.grading.sandbox's executor), at the same time as the probes, for the feedback page's outputs. The pool
(labhelpers.grading.pool) kills a worker that overruns a submission's time and starts another.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK
from labhelpers.grading.calls import CheckCall, graded_cells, with_secret_seeds
from labhelpers.grading.course import TIDIED, course_config, nbgrader_api, setup_sources
from labhelpers.grading.deadlines import assign_late_penalties
from labhelpers.grading.feedback import NOT_RUN_NOTICE, add_notices, annotate, grader_paths, plain_page
from labhelpers.grading.judging import Verdict, judge_cell
from labhelpers.grading.matching import tidy
from labhelpers.grading.probing import run_probes
from labhelpers.grading.sandbox import (
    UNSANDBOXED_NOTICE,
    Limits,
    SandboxedExecute,
    configure_execution,
    make_sandbox,
    remove_sandbox,
    unsandboxed_status,
)

PEFT_DORA_STUB = Path(__file__).with_name("peft_dora_stub.py")
"""What the probe sandbox sees in place of PEFT's DoRA layer (graded answers may not delegate to it)."""


@dataclass
class WorkerSettings:
    """What every submission a worker grades shares (written once by the pool as JSON, read by the worker).

    Attributes:
        course_root: the graded copy's nbgrader course folder.
        db_path: its gradebook.
        out_dir: the grading folder (holds the course's secret).
        scratch_root: the folder holding the sandboxes' scratch folders.
        slot: this worker's number, 0 to jobs - 1 (each slot has its own sandbox user).
        timeout_cell: seconds one cell (or one check) may run.
        timeout_submission: seconds one submission may take in all.
        memory_bytes: address-space cap of each student process.
        threads: threads each student process may use.
        data_dir: the SST-2 folder the notebook's sandbox sees, or None.
        hide: folders of the grading machine that no output may name (replaced by <grader> in the feedback).
        sandboxed: run student code in bubblewrap's sandboxes; False (--no-sandbox): with the limits only, and the
            status and the feedback page say so.
        only: regrade only these tests of submissions graded before (labhelpers.grading.partial); empty: grade all.
        run_notebooks: also run each whole notebook in its sandbox for the feedback page (grade --run-notebooks);
            False: the feedback page is the tidied notebook with the verdicts, without outputs.
    """

    course_root: str
    db_path: str
    out_dir: str
    scratch_root: str
    slot: int
    timeout_cell: int
    timeout_submission: int
    memory_bytes: int
    threads: int
    data_dir: str | None = None
    hide: list[str] = field(default_factory=list)
    sandboxed: bool = True
    only: list[str] = field(default_factory=list)
    run_notebooks: bool = False


@dataclass
class Result:
    """What happened to one submission, beyond the scores the gradebook holds."""

    student_id: str
    status: list[str] = field(default_factory=list)
    verdicts: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step: probes then judge and, at the same time, notebook (nbgrader autograde, which runs
    the notebook in its sandbox only with run_notebooks); then feedback."""


def result_path(course_root: Path, student_id: str) -> Path:
    return course_root / "results" / f"{student_id}.json"


def _notebook_path(course_root: Path, area: str, student_id: str) -> Path:
    return course_root / area / student_id / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def zero_in_gradebook(db_path: Path, course_root: Path, student_id: str) -> None:
    """Record a submission that could not be graded with every cell at 0 (as nbgrader does for a missing notebook)."""
    import warnings

    from nbgrader.api import Gradebook

    config = course_config(course_root, db_path)
    with warnings.catch_warnings(), Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as book:
        warnings.simplefilter("ignore")  # nbgrader's own submission creation triggers SQLAlchemy autoflush warnings
        book.update_or_create_student(student_id)
        submission = book.update_or_create_submission(ASSIGNMENT, student_id)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.manual_score = None
                grade.needs_manual_grade = False
        book.db.commit()


class Worker:
    """Grades the submissions of one slot; holds what they share (course, release, test cells, secret calls)."""

    def __init__(self, run: WorkerSettings):
        from labhelpers.grading.calls import course_secret

        self.run = run
        self.course = Path(run.course_root)
        self.source = nbformat.read(self.course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
        self.release = nbformat.read(self.course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
        self.cells = graded_cells(self.source)
        self.points = {cell.grade_id: cell.points for cell in self.cells}
        secret = course_secret(Path(run.out_dir))
        self.calls = {cell.grade_id: [with_secret_seeds(call, secret) for call in cell.calls] for cell in self.cells}
        self.preamble = setup_sources(self.source)
        self.limits = Limits(memory_bytes=run.memory_bytes, threads=run.threads)
        self.config = course_config(self.course, Path(run.db_path))
        configure_autograde(self.config, run.timeout_cell, execute=run.run_notebooks)
        self.api = nbgrader_api(self.config)
        self.paths = grader_paths(
            [run.out_dir, run.scratch_root, *run.hide, *([run.data_dir] if run.data_dir else [])]
        )

    def grade(self, student_id: str) -> Result:
        """Grade the notebook in submitted/<student_id>/ and write its feedback."""
        started = time.time()
        deadline = started + self.run.timeout_submission - 5
        result = Result(student_id, [] if self.run.sandboxed else [unsandboxed_status()])
        try:
            self._grade(student_id, deadline, result)
        finally:
            result.seconds = round(time.time() - started, 1)
        return result

    def _grade(self, student_id: str, deadline: float, result: Result) -> None:
        """Tidy, autograde the notebook, probe and judge, score, feed back; each step's seconds go to result.phases."""
        notebook = self._tidy(student_id, result)
        # The probes need only the tidied definitions: they run in their sandbox while nbgrader records (or runs) the
        # notebook (each step keeps its own clock in result.phases; the notes are added in the same order either way).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probes") as background:
            judged = background.submit(self._probe_and_judge, notebook, deadline, _Laps(result.phases).lap)
            lap = _Laps(result.phases).lap
            notebook_ran = self._autograde(student_id, result, lap)
            verdicts, notes = judged.result()
        lap = _Laps(result.phases).lap  # the feedback's clock starts when both are done
        result.status += notes
        result.verdicts = {grade_id: asdict(verdict) for grade_id, verdict in verdicts.items()}
        result.status += _verdict_notes(verdicts)
        self._score(student_id, verdicts)
        self._feed_back(student_id, verdicts, notebook_ran, result, lap)

    def _tidy(self, student_id: str, result: Result) -> nbformat.NotebookNode:
        """Rebuild the submission on the release into tidied/, where autograde reads it; return the rebuilt notebook."""
        submitted = nbformat.read(_notebook_path(self.course, "submitted", student_id), as_version=4)
        tidied = tidy(submitted, self.release)
        if tidied.notes:
            result.status.append(tidied.status)
        result.status += [f"answer not found: {grade_id} (its tests score 0)" for grade_id in tidied.missing]
        result.status += tidied.review  # forged grade cells, removed: a person should look
        target = _notebook_path(self.course, TIDIED, student_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(tidied.notebook, target)
        for name in ("timestamp.txt", "submission_secret.txt"):  # nbgrader's exchange files travel with the notebook
            kept = _notebook_path(self.course, "submitted", student_id).with_name(name)
            if kept.is_file():
                shutil.copyfile(kept, target.with_name(name))
        return tidied.notebook

    def _autograde(self, student_id: str, result: Result, lap: Callable[[str], None]) -> bool:
        """Record the tidied notebook in the gradebook with nbgrader's autograde; return whether nbgrader could.

        With run_notebooks, autograde runs the notebook in its sandbox first, for the feedback page's outputs and the
        written answers beside them: the run's results are never counted.
        """
        execution = sandbox = None
        if self.run.run_notebooks:
            sandbox = make_sandbox(
                Path(self.run.scratch_root), self.run.slot, "notebook", self.limits,
                data_dir=Path(self.run.data_dir) if self.run.data_dir else None, isolate=self.run.sandboxed,
            )  # fmt: skip
            execution = configure_execution(self.config, sandbox)
        try:
            outcome = self.api.autograde(ASSIGNMENT, student_id, force=True, create=True)
        finally:
            if sandbox is not None:
                remove_sandbox(sandbox)
        lap("notebook")
        if execution is not None:
            result.status += execution.events
        if not outcome["success"]:
            print(outcome.get("log", ""), outcome.get("error", ""), file=sys.stderr, flush=True)
            result.status.append("nbgrader could not run the notebook (see the log): tests judged on the definitions")
            zero_in_gradebook(Path(self.run.db_path), self.course, student_id)
        return bool(outcome["success"])

    def _probe_and_judge(
        self, notebook: nbformat.NotebookNode, deadline: float, lap: Callable[[str], None]
    ) -> tuple[dict[str, Verdict], list[str]]:
        """Probe the definitions in a sandbox that sees no reference code, then judge every test cell from the records.

        The probes' inputs come from the course's secret seeds; the judge runs here, reading the records as data.
        Returns the verdicts and the probes' notes for the status column.
        """
        answers = _answers(notebook)
        calls: list[CheckCall] = [call for cell in self.cells for call in self.calls[cell.grade_id]]
        probe_box = make_sandbox(
            Path(self.run.scratch_root), self.run.slot, "probe", self.limits, overlays=_probe_overlays(),
            isolate=self.run.sandboxed,
        )  # fmt: skip
        try:
            folder, notes = run_probes(probe_box, answers, self.preamble, calls, self.run.timeout_cell, deadline)
            lap("probes")
            verdicts = {cell.grade_id: judge_cell(cell, self.calls[cell.grade_id], folder) for cell in self.cells}
        finally:
            remove_sandbox(probe_box)
        lap("judge")
        return verdicts, notes

    def _feed_back(
        self,
        student_id: str,
        verdicts: dict[str, Verdict],
        notebook_ran: bool,
        result: Result,
        lap: Callable[[str], None],
    ) -> None:
        """Write the feedback: the verdicts in the autograded notebook, or a plain page when it did not run."""
        points = self.points
        if not notebook_ran:
            page = _notebook_path(self.course, "feedback", student_id).with_suffix(".html")
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(plain_page(student_id, verdicts, points, result.status))
            return
        autograded = _notebook_path(self.course, "autograded", student_id)
        disagreed = annotate(autograded, verdicts, points, self.paths, ran=self.run.run_notebooks)
        add_notices(
            autograded,
            info=[] if self.run.run_notebooks else [NOT_RUN_NOTICE],
            warnings=[] if self.run.sandboxed else [UNSANDBOXED_NOTICE],
        )
        if disagreed:
            result.status.append(
                "the notebook's own run disagreed on " + ", ".join(disagreed) + " (the grader's verdict counts)"
            )
        feedback = self.api.generate_feedback(ASSIGNMENT, student_id, force=True)
        if not feedback["success"]:
            result.status.append("nbgrader generate_feedback failed")
        lap("feedback")

    def _score(self, student_id: str, verdicts: dict[str, Verdict]) -> None:
        """Write the judge's scores into the gradebook (the notebook run's own scores are replaced)."""
        from nbgrader.api import Gradebook

        config = self.config
        with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as book:
            for cell in self.cells:
                grade = book.find_grade(cell.grade_id, NOTEBOOK, ASSIGNMENT, student_id)
                grade.auto_score = cell.points if verdicts[cell.grade_id].passed else 0.0
            book.db.commit()
        # nbgrader's late penalty on the judge's scores (autograde computed it on the notebook's own run)
        assign_late_penalties(self.course, Path(self.run.db_path), [student_id])


class _Laps:
    """Seconds spent in each step of one submission, each measured from the end of the step before."""

    def __init__(self, phases: dict[str, float]):
        self.phases, self.clock = phases, time.monotonic()

    def lap(self, phase: str) -> None:
        """Record the seconds since the last lap as `phase`."""
        now = time.monotonic()
        self.phases[phase] = round(now - self.clock, 1)
        self.clock = now


def _answers(notebook: nbformat.NotebookNode) -> list[dict[str, str]]:
    """Return {"label", "source"} of the notebook's answer cells and the cells the student added, in order."""
    return [
        {"label": _label(cell), "source": cell.source}
        for cell in notebook.cells
        if cell.cell_type == "code"
        and (cell.metadata.get("nbgrader", {}).get("solution") or "nbgrader" not in cell.metadata)
    ]


def _label(cell: nbformat.NotebookNode) -> str:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    return f"answer cell {grade_id}" if grade_id else "a cell you added"


def _probe_overlays() -> dict[Path, Path]:
    """{PEFT's DoRA module: the stub the probe sandbox shows instead}."""
    import peft.tuners.lora

    return {Path(peft.tuners.lora.__file__).with_name("dora.py"): PEFT_DORA_STUB}


def _verdict_notes(verdicts: dict[str, Verdict]) -> list[str]:
    """Status notes for test failures a human should know about (delegation, time-outs, missing records, our errors)."""
    said = {
        "unavailable": "used the lab's reference code or PEFT's DoRA layer (no points)",
        "timeout": "check did not finish in time",
        "no record": "no usable record from the checks",
        "grader error": "the grader could not judge, please review",
    }
    notes = []
    for reason, text in said.items():
        ids = [grade_id for grade_id, verdict in verdicts.items() if verdict.reason == reason]
        if ids:
            notes.append(f"{text}: {', '.join(ids)}")
    return notes


def configure_autograde(config, timeout_cell: int, execute: bool) -> None:
    """Set nbgrader autograde up for the tidied notebooks: with the sandboxed executor and the cell time limit when
    `execute`, without running anything otherwise."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    config.CourseDirectory.submitted_directory = TIDIED
    config.Autograde.autograde_preprocessors = [
        *([SandboxedExecute] if execute else []), IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]  # fmt: skip
    config.Execute.timeout = timeout_cell
    config.Execute.startup_timeout = 120
    # Output still in flight after a cell's reply is waited for, never turned into a failure: on a busy machine a
    # slow figure would otherwise fail a passing test (nbgrader raises on an IOPub time-out by default).
    config.Execute.iopub_timeout = 30
    config.Execute.raise_on_iopub_timeout = False
    config.Execute.execute_retries = 0
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.create_student = True
    # nbgrader makes autograded files read-only (444); the worker adds the verdicts to them afterwards, as any user.
    config.Autograde.permissions = 644


def main() -> None:
    run = WorkerSettings(**json.loads(Path(sys.argv[1]).read_text()))
    if run.only:
        from labhelpers.grading.partial import PartialWorker

        worker = PartialWorker(run)
    else:
        worker = Worker(run)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        student_id = line.strip()
        if not student_id:
            continue
        try:
            result = worker.grade(student_id)
        except Exception:  # one submission's failure is reported, and the worker goes on with the next
            traceback.print_exc()
            result = Result(
                student_id,
                status=[f"grader error ({traceback.format_exc(limit=1).strip().splitlines()[-1]}): please review"],
            )
        path = result_path(worker.course, student_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result), indent=1))
        print(json.dumps({"done": student_id}), flush=True)


if __name__ == "__main__":
    main()
