"""Grading workers: one subprocess per slot, each given one submission at a time and watched against its deadline.

Each worker (``python -m labhelpers.grading.worker SETTINGS.json``) says ``{"ready": true}`` once it has loaded the
course, then takes one student id per line on stdin and answers ``{"done": student_id}`` when that student's result
file is written. A worker that dies, or overruns a submission's time, is killed with everything it started and
replaced. SIGINT, SIGTERM and SIGHUP stop the pool after the current pass: what was finished is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from labhelpers.grading.worker import WorkerSettings

POLL_SECONDS = 0.5
"""Longest wait for a worker's message before the deadlines are checked again."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class WorkerProcess:
    """One worker process and the submission it is grading."""

    def __init__(self, settings: WorkerSettings, course: Path):
        self.settings = settings
        settings_file = course / "jobs" / f"run-{settings.slot}.json"
        settings_file.parent.mkdir(exist_ok=True)
        settings_file.write_text(json.dumps(asdict(settings)))
        log = open(course / "logs" / f"worker-{settings.slot}.log", "a")  # noqa: SIM115 - the worker's whole life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labhelpers.grading.worker", str(settings_file)],
            cwd=course, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.student: str | None = None
        self.started = 0.0
        self.ready = False

    def give(self, student_id: str) -> None:
        """Hand the worker one student to grade."""
        self.student, self.started = student_id, time.monotonic()
        self.process.stdin.write(student_id + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """Kill the worker and everything it started (its sandboxes die with it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass(frozen=True)
class Outcome:
    """What became of one submission given to a worker.

    Attributes:
        student_id: the student.
        lost: "" when the worker finished it (its result file says what happened); otherwise why no result came, as
            the status column says it (the submission scores 0).
    """

    student_id: str
    lost: str = ""


class WorkerPool:
    """Workers grading submissions several at once, each submission within its time limit.

    Use it as a context manager: entering starts the workers and catches the stop signals, leaving kills the workers
    and restores the signal handlers.
    """

    def __init__(self, settings: list[WorkerSettings], course: Path, timeout_submission: int):
        """Prepare one worker per settings record (their slots numbered 0, 1, ...).

        Args:
            settings: one per worker.
            course: the graded copy's course folder (holds jobs/ and logs/).
            timeout_submission: seconds a worker may spend on one submission before it is killed.
        """
        self.settings, self.course, self.timeout_submission = settings, course, timeout_submission
        self.workers: list[WorkerProcess] = []
        self.stopped_by: int | None = None
        """The signal that stopped the pool, or None."""
        self._handlers: dict[int, object] = {}

    def __enter__(self) -> WorkerPool:
        self._handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for settings in self.settings:
                self.workers.append(WorkerProcess(settings, self.course))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.stop()
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.stopped_by is None:
            self.stopped_by = signum

    @property
    def in_progress(self) -> list[str]:
        """The students given to a worker and not finished."""
        return [worker.student for worker in self.workers if worker.student]

    def passes(self, student_ids: list[str]) -> Iterator[list[Outcome]]:
        """Grade the students, yielding after each pass (at most POLL_SECONDS apart) the outcomes it brought.

        Stops when every student has an outcome, or after the pass in which a stop signal came (`stopped_by`).
        """
        waiting = list(student_ids)
        while (waiting or self.in_progress) and self.stopped_by is None:
            for worker in self.workers:
                if worker.ready and worker.student is None and waiting:
                    worker.give(waiting.pop(0))
            yield self._read_messages() + self._replace_lost()

    def _read_messages(self) -> list[Outcome]:
        """Wait for the workers' messages; return the outcomes of those that finished a student."""
        streams = {worker.process.stdout: worker for worker in self.workers if worker.process.poll() is None}
        readable, _, _ = select.select(list(streams), [], [], POLL_SECONDS)
        finished = []
        for stream in readable:
            worker = streams[stream]
            message = _message(stream.readline())
            if message.get("ready"):
                worker.ready = True
            elif message.get("done") and message["done"] == worker.student:
                finished.append(Outcome(worker.student))
                worker.student = None
        return finished

    def _replace_lost(self) -> list[Outcome]:
        """Kill and replace every worker that died or overran its submission; return the submissions lost."""
        lost = []
        for index, worker in enumerate(self.workers):
            dead = worker.process.poll() is not None
            late = worker.student and time.monotonic() - worker.started > self.timeout_submission
            if not (dead or late):
                continue
            if worker.student:
                reason = (
                    f"submission time limit ({self.timeout_submission} s) exceeded: 0 points"
                    if late
                    else "grader error (the worker stopped): 0 points, please review"
                )
                lost.append(Outcome(worker.student, reason))
            worker.stop()
            self.workers[index] = WorkerProcess(worker.settings, self.course)
        return lost


def _message(line: str) -> dict:
    """Read one line a worker wrote: a JSON object, or {} for anything else."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
