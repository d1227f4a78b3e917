"""The graded copy of the course: what prepare_course refuses, and settings that nbgrader reads in that folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from labhelpers.assignment import COURSE_ID, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import filesystem_type, prepare_course, write_course_settings


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
    assert settings.submitted_directory == "tidied"  # the formgrader lists the submissions autograde read
    assert app.config.Autograde.exporter_class == "labhelpers.grading.formgrade.AutogradeRefused"
    assert [record.getMessage() for record in warned] == []  # such as "No nbgrader_config.py file found"


def test_rewriting_the_course_settings_keeps_the_late_policy(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    write_course_settings(course, tmp_path / "gradebook.db", {"PenaltyPerDay": {"percent_per_day": 5.0}})
    path = write_course_settings(course, tmp_path / "moved" / "gradebook.db")
    settings = json.loads(path.read_text())
    assert settings["PenaltyPerDay"] == {"percent_per_day": 5.0}
    assert settings["CourseDirectory"]["db_url"] == f"sqlite:///{tmp_path / 'moved' / 'gradebook.db'}"


def test_nbgraders_own_autograde_is_refused_in_the_graded_copy(tmp_path):
    """nbgrader creates its exporter before it opens a submission: the refusal leaves every file as it was."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    course = tmp_path / "course"
    notebook = course / "tidied" / "ana" / "dora" / "dora_lab.ipynb"
    autograded = course / "autograded" / "ana" / "dora" / "dora_lab.ipynb"
    for path in (notebook, autograded):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    write_course_settings(course, tmp_path / "gradebook.db")
    config = Config(json.loads((course / "nbgrader_config.json").read_text()))
    coursedir = CourseDirectory(config=config, assignment_id="dora", student_id="ana")
    converter = Autograde(coursedir=coursedir, config=config)
    converter.force = True  # what the formgrader's button asks: replace the autograded copy
    with pytest.raises(LabGradingError, match="nbgrader's autograde is off in this graded copy"):
        converter.start()
    assert autograded.read_text() == "{}" and notebook.read_text() == "{}"
    assert not (tmp_path / "gradebook.db").exists()


MOUNTS = """\
overlay / overlay rw,relatime 0 0
/dev/sda1 /srv ext4 rw,relatime 0 0
nfs.example.org:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
/dev/sdb1 /home/ana/local\\040disk ext4 rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/srv/graded", "ext4"),
        ("/home/ana/graded", "nfs4"),
        ("/home/ana/local disk/graded", "ext4"),  # a mount point with a space, escaped as \\040
        ("/homework/graded", "overlay"),  # /home is not a prefix of /homework
        ("/tmp/graded", "overlay"),
    ],
)
def test_filesystem_type_is_the_deepest_mount_above_the_folder(path, kind):
    assert filesystem_type(Path(path), MOUNTS) == kind


def test_prepare_course_refuses_a_network_filesystem(tmp_path, monkeypatch):
    from labhelpers.grading import course

    monkeypatch.setattr(course, "filesystem_type", lambda path, mounts=None: "nfs4")
    with pytest.raises(LabGradingError, match="is on a network filesystem \\(nfs4\\); the gradebook is SQLite in WAL"):
        prepare_course(tmp_path / "graded", SOURCE_NOTEBOOK)
    assert not (tmp_path / "graded").exists()
