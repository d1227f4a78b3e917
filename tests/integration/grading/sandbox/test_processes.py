"""No process is left behind: removing a sandbox, or the grader dying, ends every process started inside it, also
those that detached themselves (a new session, a double fork)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labhelpers.grading.sandbox import make_sandbox, remove_sandbox
from tests.support.sandbox import GRADERS, alive_with, as_grader, needs_bwrap

DETACH = r"""
import os, subprocess, sys
subprocess.Popen(["sleep", sys.argv[1]], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", sys.argv[1]])
os.execvp("sleep", ["sleep", sys.argv[1]])
"""


def _sleepers_started(marker: str, count: int = 3, seconds: float = 60) -> int:
    """Wait until `count` sleeps with `marker` run (the detached ones exec a moment later); return how many run."""
    deadline = time.time() + seconds
    while len(alive_with(marker, "sleep")) < count and time.time() < deadline:
        time.sleep(0.05)
    return len(alive_with(marker, "sleep"))


def remove_leaves_nothing() -> dict:
    """Start detached processes in a sandbox, remove it; return what is left of it."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    marker = f"{1000 + secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    try:
        sandbox = make_sandbox(scratch, 0, "notebook")
        top = subprocess.Popen(sandbox.command([sys.executable, "-P", "-c", DETACH, marker]))
        started = _sleepers_started(marker)
        remove_sandbox(sandbox)
        top.wait(timeout=10)
        return dict(started=started, left=alive_with(marker), folder=sandbox.workdir.parent.exists())
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


GRADER = r"""
import subprocess, sys, time
from pathlib import Path
from labhelpers.grading.sandbox import make_sandbox
sandbox = make_sandbox(Path(sys.argv[1]), 0, "notebook")
subprocess.Popen(sandbox.command([sys.executable, "-P", "-c", sys.argv[2], sys.argv[3]]))
time.sleep(600)
"""


def grader_death_leaves_nothing() -> dict:
    """Start a grader that starts detached sandboxed processes, kill the grader; return what is left."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    marker = f"{1000 + secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    try:
        grader = subprocess.Popen([sys.executable, "-P", "-c", GRADER, str(scratch), DETACH, marker])
        started = _sleepers_started(marker)
        grader.kill()
        grader.wait()
        deadline = time.time() + 5
        while alive_with(marker) and time.time() < deadline:
            time.sleep(0.05)
        return dict(started=started, left=alive_with(marker))
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_remove_sandbox_leaves_no_process_and_no_folder(grader):
    report = as_grader(grader, remove_leaves_nothing)
    assert report == dict(started=3, left=[], folder=False)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_a_killed_grader_leaves_no_process(grader):
    assert as_grader(grader, grader_death_leaves_nothing) == dict(started=3, left=[])


# Every scenario the normal grader runs (in one subprocess, see tests.support.sandbox.as_grader).
USER_CALLS = [
    (remove_leaves_nothing, {}),
    (grader_death_leaves_nothing, {}),
]
