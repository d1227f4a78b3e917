"""Finding a sandbox's processes (its bwrap by argv, or by working folder), killing them, and removing its folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labhelpers.grading.sandbox.processes import kill, processes, remove_tree

SLEEP = "import time; time.sleep(60)"


def _running(process: subprocess.Popen, program: bytes) -> subprocess.Popen:
    """Return `process` once it runs `program` (until exec, the child's argv is still pytest's)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[0] != program:
        assert time.monotonic() < deadline, "the process did not start"
        time.sleep(0.01)
    return process


@pytest.fixture
def started():
    """Start processes for a test; kill whatever of them is left afterwards."""
    made: list[subprocess.Popen] = []
    yield made
    for process in made:
        process.kill()
        process.wait()


def test_a_bwrap_naming_the_workdir_is_found_and_killed(tmp_path, started):
    workdir = tmp_path / "home"
    workdir.mkdir()
    # A stand-in for the sandbox's bwrap: a process whose argv[0] is "bwrap" and whose argv names the workdir.
    started.append(
        _running(subprocess.Popen(["bwrap", "-c", SLEEP, str(workdir)], executable=sys.executable), b"bwrap")
    )
    other = tmp_path / "other"
    assert processes(workdir, range(0)) == [started[0].pid]
    assert processes(other, range(0)) == []
    kill(workdir, None)
    assert started[0].wait(timeout=5) == -9


def test_a_process_working_in_the_workdir_is_found_only_by_cwd(tmp_path, started):
    workdir = tmp_path / "home"
    (workdir / "inner").mkdir(parents=True)
    started.append(
        _running(subprocess.Popen([sys.executable, "-c", SLEEP], cwd=workdir / "inner"), sys.executable.encode())
    )
    assert processes(workdir, range(0)) == []
    assert processes(workdir, range(0), by_cwd=True) == [started[0].pid]


def test_processes_of_the_uids_are_found(started):
    started.append(subprocess.Popen([sys.executable, "-c", SLEEP]))
    assert started[0].pid in processes(None, range(os.getuid(), os.getuid() + 1))


def test_remove_tree_deletes_folders_whose_permissions_were_taken_away(tmp_path):
    folder = tmp_path / "slot"
    (folder / "home" / "locked" / "deeper").mkdir(parents=True)
    (folder / "home" / "locked" / "deeper" / "file").write_text("x")
    (folder / "home" / "locked" / "deeper").chmod(0)
    (folder / "home" / "locked").chmod(0o500)
    remove_tree(folder)
    assert not folder.exists()
