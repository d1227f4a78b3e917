"""The resource limits hold in a real sandbox (memory, file size, core dumps, processes), whoever grades.

The process limit counts the sandbox's own processes, not the grader's: the grader runs more of its own than the
sandbox may.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from labhelpers.grading.sandbox import Limits, make_sandbox, remove_sandbox
from tests.support.sandbox import GRADERS, as_grader, needs_bwrap, run_inside

LIMITS = Limits(memory_bytes=2**30, max_processes=32, max_file_bytes=2**20, threads=1)

MEASURE_LIMITS = r"""
import json, os, resource, sys, time
result = {}
try:
    bytearray(2 * 2**30)
    result["memory"] = "allocated"
except MemoryError:
    result["memory"] = "MemoryError"
try:
    with open("big", "wb") as handle:
        handle.write(b"x" * (2**20 + 1))
    result["file"] = "written"
except OSError as error:
    result["file"] = os.strerror(error.errno)
result["core"] = resource.getrlimit(resource.RLIMIT_CORE)
result["no_new_privs"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0]
def in_my_namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
    except PermissionError:  # a process outside it (bwrap's, as root)
        return False
mine = [p for p in os.listdir("/proc") if p.isdigit() and os.stat(f"/proc/{p}").st_uid == os.getuid() and in_my_namespace(p)]
result["tasks_before"] = sum(len(os.listdir(f"/proc/{p}/task")) for p in mine)
children = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    result["forks"] = "unlimited"
except BlockingIOError:
    result["forks"] = len(children)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps(result))
"""


def _sleepers(count: int, seconds: str) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", seconds]) for _ in range(count)]


def measure_limits(grader_processes: int) -> dict:
    """Run MEASURE_LIMITS in a sandbox under LIMITS while the grader itself runs `grader_processes` processes."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    busy = _sleepers(grader_processes, "120")
    try:
        sandbox = make_sandbox(scratch, 0, "notebook", LIMITS)
        report = run_inside(sandbox, MEASURE_LIMITS)
        remove_sandbox(sandbox)
        return report
    finally:
        for process in busy:
            process.kill()
            process.wait()
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_limits_hold(grader):
    # The grader runs more processes of its own than the sandbox may: they must not count against it.
    report = as_grader(grader, measure_limits, grader_processes=LIMITS.max_processes + 8)
    assert report["memory"] == "MemoryError"
    assert report["file"] == "File too large"
    assert report["core"] == [0, 0] and report["no_new_privs"] == "1"
    # RLIMIT_NPROC counts the sandbox's own tasks (its uid's, in its user namespace): it may start exactly the rest.
    assert report["forks"] == LIMITS.max_processes - report["tasks_before"], report


# Every scenario the normal grader runs (in one subprocess, see tests.support.sandbox.as_grader).
USER_CALLS = [
    (measure_limits, dict(grader_processes=LIMITS.max_processes + 8)),
]
