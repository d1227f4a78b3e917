"""The graded copy of the course, made by nbgrader: built once and reused while the source is unchanged.

nbgrader's own commands work in that folder, on the grading run's gradebook.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import prepare_course


def test_prepare_course_builds_the_graded_copy_and_reuses_it_while_current(tmp_path):
    out = tmp_path / "graded"
    course, db_path = prepare_course(out, SOURCE_NOTEBOOK)
    release = course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert release.is_file() and db_path == out / "gradebook.db" and out.stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(db_path) as connection:  # workers write while others read
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    built = release.stat().st_mtime_ns
    assert prepare_course(out, SOURCE_NOTEBOOK) == (course, db_path)
    assert release.stat().st_mtime_ns == built, "a current graded copy was built again"

    changed = tmp_path / "changed.ipynb"
    changed.write_bytes(SOURCE_NOTEBOOK.read_bytes().replace(b"DoRA", b"DoRA ", 1))
    prepare_course(out, changed)
    assert (course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes() == changed.read_bytes()
    assert release.stat().st_mtime_ns != built


def test_nbgraders_commands_work_in_the_graded_copy(tmp_path):
    course, _ = prepare_course(tmp_path / "graded", SOURCE_NOTEBOOK)
    bin_dir = os.path.dirname(sys.executable)
    environment = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "JUPYTER_CONFIG_DIR": str(tmp_path / "no-user-config"),
    }
    listed = subprocess.run(
        [os.path.join(bin_dir, "nbgrader"), "db", "assignment", "list"],
        cwd=course, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert ASSIGNMENT in listed.stdout and "No nbgrader_config.py" not in listed.stderr + listed.stdout
