"""The graded copy of the course: what prepare_course refuses, and settings that nbgrader reads in that folder."""

from __future__ import annotations

import json
import logging

import pytest

from labhelpers.assignment import COURSE_ID, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import prepare_course, write_course_settings


def test_prepare_course_refuses_a_missing_instructor_notebook(tmp_path):
    with pytest.raises(LabGradingError, match="No instructor notebook at .*: grading needs the nbgrader source"):
        prepare_course(tmp_path / "graded", tmp_path / "missing.ipynb")
    assert not (tmp_path / "graded").exists()


def test_prepare_course_refuses_an_out_folder_that_is_a_file(tmp_path):
    (tmp_path / "graded").write_text("")
    with pytest.raises(LabGradingError, match="--out .* is a file: give a folder"):
        prepare_course(tmp_path / "graded", SOURCE_NOTEBOOK)


def test_the_course_settings_are_read_by_nbgrader_in_that_folder(tmp_path, monkeypatch):
    from nbgrader.apps import NbGrader

    # Quotes, backslashes and a newline in the path: the settings file is data, never Python to get wrong.
    course = tmp_path / 'it\'s "a" \\ course\nfolder'
    course.mkdir()
    path = write_course_settings(course, course / "gradebook.db")
    assert json.loads(path.read_text())["CourseDirectory"]["root"] == str(course)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(tmp_path / "no-system-config"))
    monkeypatch.chdir(course)
    app = NbGrader()
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warned.append
    app.log.addHandler(handler)
    app.load_config_file()
    settings = app.config.CourseDirectory
    assert (settings.root, settings.course_id, settings.db_url) == (
        str(course),
        COURSE_ID,
        f"sqlite:///{course / 'gradebook.db'}",
    )
    assert (settings.source_directory, settings.release_directory) == ("solutions", "notebooks")
    assert [record.getMessage() for record in warned] == []  # such as "No nbgrader_config.py file found"
