"""A course for the grading tests: the release generated now from solutions/, the notebook's environment, grades.csv."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import release


def fresh_release(root: Path) -> Path:
    """Copy the instructor's notebook into the course folder `root`, release it there with nbgrader; return the release."""
    target = root / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    target.parent.mkdir(parents=True)
    target.write_bytes(SOURCE_NOTEBOOK.read_bytes())
    return release(root)


@contextmanager
def lab_environment(sst2_dir: Path) -> Iterator[None]:
    """Run notebooks as grading and validation do: LAB_FAST on the local SST-2, the venv's bin/ on PATH (alembic)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_FAST", "1")
        patch.setenv("LAB_DATA_DIR", str(sst2_dir))
        patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        yield


def read_grades(path: Path) -> dict[str, dict[str, str]]:
    """Return grades.csv's rows by student id."""
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}
