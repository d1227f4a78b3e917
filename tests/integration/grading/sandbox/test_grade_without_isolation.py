"""`dora-lab grade` without isolation, the real command in a subprocess on a one-submission class.

Where bubblewrap cannot isolate (not on PATH; user namespaces blocked, here by running the grader inside a real
`bwrap --disable-userns`) it stops before grading anything and says why and what to do. Only with --no-sandbox does
it grade, and then the status column of grades.csv, status.json and the student's feedback page all say so.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from labhelpers.grading.samples import write_submission
from labhelpers.grading.sandbox import NO_SANDBOX, UNSANDBOXED_NOTICE
from tests.support.course import fresh_release
from tests.support.sandbox import GRADER_UID, closed_folders, host_view

VENV_BIN = Path(sys.executable).parent
DORA_LAB = VENV_BIN / "dora-lab"
REFUSED = "dora-lab grade: bubblewrap cannot isolate student code on this machine: "


@pytest.fixture(scope="module")
def one_student() -> Path:
    """A class of one, in a folder any grader can read: the release nbgrader generates now, with a first cell that
    ends the kernel (the notebook's run then takes seconds; nbgrader still writes the feedback page)."""
    root = Path(tempfile.mkdtemp(prefix="one-student-"))
    root.chmod(0o755)
    notebook = nbformat.read(fresh_release(root / "course"), as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(0)"))
    write_submission(root / "submissions", "ana", notebook)
    for folder, _, files in os.walk(root):
        Path(folder).chmod(0o755)
        for name in files:
            Path(folder, name).chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def dora_lab_grade(root: Path, out: Path, sst2_dir: Path, *extra: str, prefix=(), path=str(VENV_BIN)):
    """Run `dora-lab grade SUBMISSIONS --out OUT` with only `path` on PATH, after `prefix` (a view, a uid)."""
    environment = ["env", "-i", f"PATH={path}", f"HOME={root}", "LAB_FAST=1", f"LAB_DATA_DIR={sst2_dir}"]
    command = [*prefix, *environment, "HF_HUB_OFFLINE=1", str(DORA_LAB), "grade", str(root / "submissions")]
    return subprocess.run(
        [*command, "--out", str(out), "--quiet", *extra], capture_output=True, text=True, timeout=900
    )


def test_grade_refuses_without_bwrap_and_writes_no_grades(one_student, sst2_dir):
    out = one_student / "out-missing"
    completed = dora_lab_grade(one_student, out, sst2_dir)  # PATH: the venv's bin/ alone, where no bwrap is
    assert completed.returncode != 0, completed.stdout
    assert REFUSED + "bwrap missing." in completed.stderr, completed.stderr
    assert "install bubblewrap" in completed.stderr and "add --no-sandbox" in completed.stderr
    assert not out.exists(), sorted(out.rglob("*"))


def test_grade_refuses_where_user_namespaces_are_blocked(one_student, sst2_dir):
    """The grader inside a bwrap that forbids nested user namespaces, as a normal user: bwrap itself says ENOSPC."""
    grader = []
    if os.geteuid() == 0:
        grader = [*host_view(), "setpriv", f"--reuid={GRADER_UID}", f"--regid={GRADER_UID}", "--clear-groups", "--"]
    blocked = [shutil.which("bwrap"), "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
    out = Path(tempfile.mkdtemp(prefix="out-blocked-")) / "out"
    out.parent.chmod(0o777)
    try:
        completed = dora_lab_grade(one_student, out, sst2_dir, prefix=[*grader, *blocked], path=f"{VENV_BIN}:/usr/bin")
        assert completed.returncode != 0, completed.stdout
        assert REFUSED + "already inside a user namespace that allows no other." in completed.stderr, completed.stderr
        assert "(ENOSPC)" in completed.stderr and "/proc/self/uid_map" in completed.stderr
        assert not out.exists()
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def graded_without_sandbox(one_student, sst2_dir) -> Path:
    """Grade the class with --no-sandbox where no bwrap is on PATH; return the grading folder."""
    out = one_student / "out-no-sandbox"
    # As root, sandbox uids must reach Python: show it to them when it lies in a folder they cannot enter.
    view = host_view() if os.geteuid() == 0 and closed_folders() else []
    completed = dora_lab_grade(one_student, out, sst2_dir, "--no-sandbox", prefix=view)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert f"no sandbox, as asked; each status will read: {NO_SANDBOX}" in completed.stderr
    return out


@pytest.mark.slow
def test_no_sandbox_marks_the_status_in_grades_csv_and_status_json(graded_without_sandbox):
    with open(graded_without_sandbox / "grades.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["student_id"] == "ana" and row["status"].startswith(f"{NO_SANDBOX}: student code ran as "), row
    status = json.loads((graded_without_sandbox / "status.json").read_text())["ana"]["status"]
    assert status[0] == row["status"].split("; ")[0] and "resource limits only" in status[0]


@pytest.mark.slow
def test_no_sandbox_opens_the_feedback_page_with_the_notice(graded_without_sandbox):
    page = html.unescape((graded_without_sandbox / "feedback" / "ana" / "dora_lab.html").read_text())
    assert "Grade cell:" in page, "not nbgrader's page of the notebook's run"
    assert UNSANDBOXED_NOTICE in page and page.index(UNSANDBOXED_NOTICE) < page.index("Grade cell:"), "not first"
