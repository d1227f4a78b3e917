"""What this machine can do: bubblewrap works here; without it a sandbox is refused with the diagnosis, and only
`isolate=False` (--no-sandbox) runs code, with the resource limits (or is refused where the sandbox's uid could not
run Python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from labhelpers.grading.sandbox import FIRST_UID, problem
from tests.support.sandbox import GRADER_UID, as_grader, closed_folders, host_view


def test_bubblewrap_is_usable_here():
    assert problem() == "", problem()


WITHOUT_BWRAP = r"""
import json, os, subprocess, sys, tempfile
from pathlib import Path
from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import Limits, SandboxUnavailable, make_sandbox, problem, remove_sandbox
scratch = Path(tempfile.mkdtemp())
scratch.chmod(0o711)
code = "import os\ntry:\n    bytearray(2**31)\nexcept MemoryError:\n    print(os.getcwd(), os.getuid(), 'MemoryError')"
try:
    make_sandbox(scratch, 0, "notebook", Limits(memory_bytes=2**30))
    raise SystemExit("a sandbox was made without bwrap")
except SandboxUnavailable:
    pass
try:
    sandbox = make_sandbox(scratch, 0, "notebook", Limits(memory_bytes=2**30), isolate=False)
except LabGradingError as error:
    print(json.dumps(dict(problem=problem(), refused=str(error))))
    raise SystemExit
completed = subprocess.run(sandbox.command([sys.executable, "-P", "-c", code]), capture_output=True, text=True)
remove_sandbox(sandbox)
print(json.dumps(dict(problem=problem(), out=completed.stdout.strip(), workdir=str(sandbox.workdir))))
"""


def without_bwrap(python_readable: bool) -> dict:
    """Run WITHOUT_BWRAP where bwrap is not on PATH; as root, in a view where Python is readable by others or not."""
    view = host_view() if python_readable and os.geteuid() == 0 else []
    completed = subprocess.run(
        [*view, sys.executable, "-P", "-c", WITHOUT_BWRAP],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "HOME": os.environ.get("HOME", "/")},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


# (grader, Python readable by the sandbox uid, what happens)
WITHOUT_BWRAP_CASES = [
    ("user", True, "runs as the grader with the limits"),
    ("root", True, "runs as the slot's uid with the limits"),
    ("root", False, "is refused: the slot's uid could not run Python"),
]


@pytest.mark.parametrize(
    "grader, python_readable, outcome", WITHOUT_BWRAP_CASES, ids=[c[2] for c in WITHOUT_BWRAP_CASES]
)
def test_without_bwrap_a_sandbox_is_refused_and_only_no_sandbox_runs_code(grader, python_readable, outcome):
    if grader == "root" and not python_readable and not closed_folders():
        pytest.skip("Python is readable by other users on this machine")
    report = as_grader(grader, without_bwrap, python_readable=python_readable)
    assert "bwrap missing" in report["problem"] and "apt-get install bubblewrap" in report["problem"]
    assert "--no-sandbox" in report["problem"] and "reach the network" in report["problem"]
    if not python_readable:
        assert "cannot be entered by other users" in report["refused"]
        return
    workdir, uid, error = report["out"].split()
    assert (workdir, error) == (report["workdir"], "MemoryError")
    assert int(uid) >= FIRST_UID if grader == "root" else int(uid) == GRADER_UID


# Every scenario the normal grader runs (in one subprocess, see tests.support.sandbox.as_grader).
USER_CALLS = [
    (without_bwrap, dict(python_readable=True)),
]
