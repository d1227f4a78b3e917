"""`dora-lab backup`: the gradebook as SQLite's online backup sees it, and the secret, readable by the owner only."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.backup import backup
from labhelpers.grading.calls import SECRET_FILE


@pytest.fixture
def out_dir(tmp_path):
    """A grading folder whose gradebook is in WAL mode, as `dora-lab grade` leaves it."""
    folder = tmp_path / "graded"
    source = folder / "course" / "solutions" / "dora" / "dora_lab.ipynb"
    source.parent.mkdir(parents=True)
    source.write_text("{}")
    with closing(sqlite3.connect(folder / "gradebook.db")) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE grade (name TEXT, manual_score REAL)")
        connection.commit()
    (folder / SECRET_FILE).write_text("ab" * 32 + "\n")
    return folder


def test_backup_holds_a_grade_still_in_the_write_ahead_log(out_dir, tmp_path):
    # A formgrader that just saved a grade: the row is in gradebook.db-wal until a checkpoint, not in gradebook.db.
    with closing(sqlite3.connect(out_dir / "gradebook.db")) as formgrader:
        formgrader.execute("PRAGMA wal_autocheckpoint=0")
        formgrader.execute("INSERT INTO grade VALUES ('ex3_written_answer', 1.5)")
        formgrader.commit()
        copied_file = tmp_path / "copied.db"
        copied_file.write_bytes((out_dir / "gradebook.db").read_bytes())
        written = backup(out_dir, tmp_path / "backup")
    with closing(sqlite3.connect(copied_file)) as copy:
        assert copy.execute("SELECT count(*) FROM grade").fetchone() == (0,)  # what copying the file would lose
    with closing(sqlite3.connect(tmp_path / "backup" / "gradebook.db")) as copy:
        assert copy.execute("SELECT * FROM grade").fetchall() == [("ex3_written_answer", 1.5)]
    assert written == [tmp_path / "backup" / "gradebook.db", tmp_path / "backup" / SECRET_FILE]
    assert (tmp_path / "backup" / SECRET_FILE).read_text() == (out_dir / SECRET_FILE).read_text()
    assert stat.S_IMODE((tmp_path / "backup" / SECRET_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700


def test_backup_of_a_folder_that_was_not_graded_says_what_to_do(tmp_path):
    with pytest.raises(LabGradingError, match="is not a grading folder .*run `dora-lab grade SUBMISSIONS_DIR --out"):
        backup(tmp_path / "nothing", tmp_path / "backup")


def test_backup_into_the_grading_folder_is_refused(out_dir):
    with pytest.raises(LabGradingError, match="give the backup a folder of its own"):
        backup(out_dir, out_dir)
