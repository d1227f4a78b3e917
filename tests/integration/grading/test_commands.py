"""`dora-lab status` and `sample-class` from the lab installed as a package, as a hub has it: a wheel, no solutions/.

The wheel is built from the working tree and installed alone into a folder (pip --target) that comes first on
PYTHONPATH, so that `python -m labhelpers` (= `dora-lab`) runs the installed copy, whose project folder is that
folder: no solutions/, no notebooks/. The course folder the instructor names with --course is a copy of the
project's source notebook.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from tests.support.install import build_wheel, install_into_folder, installed_environment

SOURCE_PART = SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
RELEASE_PART = RELEASE_NOTEBOOK.relative_to(PROJECT_ROOT)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The folder the lab's wheel was installed into."""
    folder = tmp_path_factory.mktemp("installed-lab")
    return install_into_folder(build_wheel(folder / "wheel"), folder / "site")


def dora_lab(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `dora-lab ARGS` from the installed lab in `cwd`; return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "labhelpers", *args],
        cwd=cwd,
        env=installed_environment(installed),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def course(installed, tmp_path_factory) -> Path:
    """An instructor's course folder: the source notebook, released by the installed lab's `dora-lab release`."""
    folder = tmp_path_factory.mktemp("course")
    (folder / SOURCE_PART).parent.mkdir(parents=True)
    shutil.copyfile(SOURCE_NOTEBOOK, folder / SOURCE_PART)
    result = dora_lab(installed, "release", "--course", str(folder), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_the_installed_lab_has_no_solutions_and_runs_from_its_own_folder(installed, tmp_path):
    probe = "import labhelpers.assignment as a; print(a.SOURCE_NOTEBOOK.parents[2]); print(a.SOURCE_NOTEBOOK.exists())"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=installed_environment(installed),
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == [str(installed), "False"], result
    assert not list(installed.rglob("*.ipynb")), "the wheel carries a notebook"


def test_status_without_a_course_says_what_to_give_and_still_summarises_a_grading_folder(installed, tmp_path):
    graded = tmp_path / "graded"
    graded.mkdir()
    with open(graded / "grades.csv", "w", newline="") as handle:
        rows = csv.DictWriter(handle, ["student_id", "score", "max_score", "status"])
        rows.writeheader()
        rows.writerows(
            [
                {"student_id": "ana", "score": 24, "max_score": 24, "status": "ok"},
                {"student_id": "ben", "score": 18, "max_score": 24, "status": "answers not found"},
            ]
        )
    result = dora_lab(installed, "status", str(graded), cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    release, *grades = result.stdout.splitlines()
    assert "cannot tell whether it is up to date" in release and "--course DIR" in release, release
    assert grades == ["2 submissions, mean 21.00 / 24", "look at:", "  ben: answers not found"], grades


def test_status_with_the_course_folder_finds_its_release_up_to_date(installed, course, tmp_path):
    result = dora_lab(installed, "status", "--course", str(course), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"release {course / RELEASE_PART}: up to date", result.stdout


def test_sample_class_without_a_course_writes_nothing_and_says_what_to_give(installed, tmp_path):
    result = dora_lab(installed, "sample-class", "samples", cwd=tmp_path)
    assert result.returncode == 1, result
    assert "nothing to make samples from" in result.stderr and "--course DIR" in result.stderr, result.stderr
    assert not (tmp_path / "samples").exists()


def test_sample_class_from_a_release_alone_writes_the_untouched_notebook_and_says_what_is_missing(
    installed, course, tmp_path
):
    released_only = tmp_path / "released-only"
    (released_only / RELEASE_PART).parent.mkdir(parents=True)
    shutil.copyfile(course / RELEASE_PART, released_only / RELEASE_PART)
    result = dora_lab(installed, "sample-class", "samples", "--course", str(released_only), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "samples").iterdir()) == ["untouched"]
    untouched = tmp_path / "samples" / "untouched" / "dora_lab.ipynb"
    assert nbformat.read(untouched, 4) == nbformat.read(course / RELEASE_PART, 4)
    assert "not written: the `solution` sample: no source notebook" in result.stdout, result.stdout


def test_sample_class_with_the_course_folder_writes_both_samples(installed, course, tmp_path):
    result = dora_lab(installed, "sample-class", "samples", "--course", str(course), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "samples").iterdir()) == ["solution", "untouched"]
    assert "not written" not in result.stdout, result.stdout
