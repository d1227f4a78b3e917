"""Run a submission's probes in the probe sandbox, and start them again past whatever hangs or kills them.

The grader writes the request into the sandbox's scratch folder, starts ``labhelpers.probes.runner`` inside, and
watches its progress file. A statement that hangs while the definitions load, or a check call that ignores its
time-out (or kills the process), is skipped on the next start; the call is recorded as timed out, so that its test
fails alone while every other test is still judged. Files the sandbox wrote are opened without following links.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labhelpers.grading.calls import CheckCall
from labhelpers.grading.sandbox import Sandbox
from labhelpers.probes.core import Observation
from labhelpers.probes.transport import write

OBSERVATIONS = "observations"
"""The folder, in the probe sandbox's workdir, where the runner writes its observations."""
LOAD_BUDGET = 60
"""Seconds the definitions may take to load (imports of torch and PEFT included) before the statement is skipped."""
GRACE = 5
"""Seconds a call has, beyond its time-out, to record that it timed out before the runner is killed."""
MAX_STARTS = 6
"""Most times the runner is started for one submission (each start skips what stopped the previous one)."""


def read_file(folder: Path, name: str, limit: int = 2**20) -> str | None:
    """Read a small text file the sandbox wrote, without following links; None when absent or unreadable."""
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data.decode("utf-8", errors="replace")


def write_file(folder: Path, name: str, text: str) -> None:
    """Create folder/name afresh (a link or file the sandbox left there is removed first, never followed)."""
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    finally:
        os.close(directory)


def _progress(folder: Path) -> dict:
    text = read_file(folder, "progress", limit=4096)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _stop(process: subprocess.Popen) -> None:
    """Kill the runner's whole process group (bwrap then ends the sandbox's pid namespace)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_probes(
    sandbox: Sandbox,
    answers: list[dict[str, str]],
    preamble: list[str],
    calls: list[CheckCall],
    timeout: int,
    deadline: float,
    load_budget: float = LOAD_BUDGET,
) -> tuple[Path, list[str]]:
    """Probe every call on the submission's definitions inside `sandbox`; return (observations folder, notes).

    Args:
        sandbox: a fresh probe-view sandbox.
        answers: {"label", "source"} of the submission's code cells, in notebook order.
        preamble: the instructor's setup cells (their imports are run first).
        calls: the check calls, secret seeds included.
        timeout: seconds one call may take.
        deadline: time.time() by which everything must be done (later calls are then recorded as timed out).
        load_budget: seconds one statement of the definitions may take to load before it is skipped.

    Returns:
        The folder (on the grader's side) holding one observation per call, and notes for the status column.
    """
    probes = _Probes(sandbox, answers, preamble, calls, timeout, deadline, load_budget)
    for _ in range(MAX_STARTS):
        process = probes.start()
        probes.watch(process)
        state = _progress(probes.out)
        if state.get("done"):
            return probes.out, _load_notes(probes.out) + probes.notes
        if time.time() > deadline:
            probes.notes.append("the checks ran out of the submission's time")
            break
        if not probes.step_past(state, process.returncode):
            break
    return probes.out, probes.notes


@dataclass
class _Probes:
    """One submission's probe runs: what every start of the runner is given, and what the earlier starts left.

    Attributes:
        skip: [answer cell, statement] of each statement skipped because it did not finish loading.
        notes: what happened, for the status column.
    """

    sandbox: Sandbox
    answers: list[dict[str, str]]
    preamble: list[str]
    calls: list[CheckCall]
    timeout: int
    deadline: float
    load_budget: float
    skip: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        """The observations folder, on the grader's side."""
        return self.sandbox.workdir / OBSERVATIONS

    def start(self) -> subprocess.Popen:
        """Write the request (the statements to skip included) and start the runner in the sandbox."""
        request = {
            "answers": self.answers,
            "preamble": self.preamble,
            "calls": [asdict(call) for call in self.calls],
            "out": self.sandbox.inside(self.out),
            "timeout": self.timeout,
            "skip": self.skip,
        }
        write_file(self.sandbox.workdir, "request.json", json.dumps(request))
        argv = [
            sys.executable,
            "-P",
            "-m",
            "labhelpers.probes.runner",
            self.sandbox.inside(self.sandbox.workdir / "request.json"),
        ]
        return subprocess.Popen(
            self.sandbox.command(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def watch(self, process: subprocess.Popen) -> None:
        """Wait for the runner to end; kill it when its progress stalls past its budget or the deadline passes."""
        last, since = None, time.monotonic()
        while process.poll() is None:
            time.sleep(0.2)
            state = _progress(self.out)
            if state != last:
                last, since = state, time.monotonic()
            budget = self.load_budget if "loading" in state or not state else self.timeout + GRACE
            if time.monotonic() - since > budget or time.time() > self.deadline:
                _stop(process)
                break

    def step_past(self, state: dict, returncode: int) -> bool:
        """Record what stopped the runner so that the next start goes past it; False when it cannot go on.

        A statement that did not finish loading is skipped next time; a call that stalled or ended the process is
        recorded as timed out (or ended) and not made again.
        """
        if "loading" in state and isinstance(state["loading"], list) and len(state["loading"]) == 2:
            cell, position = state["loading"]
            answers = self.answers
            label = answers[cell]["label"] if isinstance(cell, int) and 0 <= cell < len(answers) else "an answer cell"
            self.notes.append(f"{label}: a statement that did not finish loading was skipped")
            self.skip.append([cell, position])
            return True
        if isinstance(state.get("calling"), str):
            if not self.out.is_dir() or self.out.is_symlink():
                return False
            # Killed by us (no progress): a time-out; otherwise the submission's code ended the process.
            facts = {"__timeout__": self.timeout} if returncode == -signal.SIGKILL else {"__ended__": returncode}
            write(Observation(facts=facts), _safe_stem(self.out, state["calling"]))
            return True
        self.notes.append("the checks stopped before they began (the process exited)")
        return False


def _load_notes(folder: Path) -> list[str]:
    """Return what the runner said about answer cells it could not load (a few short lines)."""
    text = read_file(folder, "load_notes.json", limit=64 * 1024)
    try:
        notes = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(note)[:200] for note in notes if isinstance(note, str) and not note.startswith("setup import")][:5]


def _safe_stem(folder: Path, key: str) -> Path:
    """Return folder/key after removing any link the sandbox planted under that name."""
    for suffix in (".json", ".safetensors"):
        path = folder / f"{key}{suffix}"
        if path.is_symlink() or path.exists():
            path.unlink()
    return folder / key
