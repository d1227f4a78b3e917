"""status and sample-class on course folders without the source notebook (a lab installed as a package)."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from labhelpers.assignment import RELEASE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError
from labhelpers.grading import commands


def test_status_without_a_source_notebook_says_it_cannot_tell_and_names_the_option(tmp_path):
    line = commands.status(None, course=tmp_path)
    assert line.startswith("release: cannot tell whether it is up to date: no source notebook at "), line
    assert str(tmp_path / "solutions" / "dora" / "dora_lab.ipynb") in line and "--course DIR" in line, line


def test_status_names_the_missing_grades_of_a_grading_folder(tmp_path):
    lines = commands.status(tmp_path / "graded", course=tmp_path).splitlines()
    assert (
        lines[1]
        == f"{tmp_path / 'graded' / 'grades.csv'} does not exist: run `dora-lab grade ... --out {tmp_path / 'graded'}`"
    )


def test_sample_class_from_a_release_alone_writes_it_untouched_and_says_what_is_missing(tmp_path):
    released = tmp_path / "course" / RELEASE_NOTEBOOK.relative_to(PROJECT_ROOT)
    released.parent.mkdir(parents=True)
    shutil.copyfile(RELEASE_NOTEBOOK, released)
    samples = commands.sample_class(tmp_path / "samples", course=tmp_path / "course")
    assert samples.written == [tmp_path / "samples" / "untouched" / "dora_lab.ipynb"]
    assert nbformat.read(samples.written[0], 4) == nbformat.read(released, 4)
    assert samples.summary().splitlines()[1].startswith("not written: the `solution` sample: no source notebook at ")


def test_sample_class_without_any_notebook_says_what_to_give_and_writes_nothing(tmp_path):
    with pytest.raises(LabGradingError, match=r"nothing to make samples from: .* with --course DIR"):
        commands.sample_class(tmp_path / "samples", course=tmp_path)
    assert not (tmp_path / "samples").exists()
