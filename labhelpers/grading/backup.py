"""A backup of a grading folder: what grading again cannot give back.

The gradebook holds the manual grades, comments, due date and extensions; the secret decides the hidden tests' inputs
(grading again with it gives the same scores; without it the inputs differ, and so may a borderline answer's
score). The rest of OUT_DIR (course/, feedback/, grades.csv, status.json) is rebuilt by `dora-lab grade` from the
submissions.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE
from labhelpers.grading.course import graded_course


def backup(out_dir: Path, dest: Path) -> list[Path]:
    """Copy OUT_DIR's gradebook and secret into DEST (readable by its owner only).

    The gradebook is copied with SQLite's online backup, a consistent snapshot even while the formgrader or a
    grading run writes to it (copying the file alone can miss what its write-ahead log still holds).

    Args:
        out_dir: the grading folder.
        dest: the backup folder (created if missing; files there are replaced).

    Returns:
        The files written.
    """
    _, db_path = graded_course(out_dir)
    secret = out_dir / SECRET_FILE
    if not secret.is_file():
        raise LabGradingError(f"{secret} is missing: nothing was graded in {out_dir} yet, or the secret was lost.")
    if dest.resolve() == out_dir.resolve():
        raise LabGradingError("give the backup a folder of its own, not the grading folder")
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)  # the secret and every student's grades
    written = [dest / "gradebook.db", dest / SECRET_FILE]
    with closing(sqlite3.connect(db_path)) as source, closing(sqlite3.connect(written[0])) as copy:
        source.backup(copy)
    shutil.copyfile(secret, written[1])
    os.chmod(written[1], 0o600)
    return written
