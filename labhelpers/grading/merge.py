"""`dora-lab merge SHARD_DIRS… --out OUT_DIR`: one class's grading folder from the folders of its shards.

Each shard (`dora-lab grade --shard i/N`) graded its part of the class on its own machine. The merge checks that the
shards are one class's — all N of them, the same secret, source, release, judges and settings (shards.ShardRecord) —
and refuses them otherwise, saying what differs. It then builds OUT_DIR as a single run would have left it: the
nbgrader course and its gradebook (every student's grades, comments and submission times copied through nbgrader's
Gradebook API), the ledger, each student's graded files, the feedback, grades.csv and the class report. OUT_DIR is
then an ordinary grading folder: `dora-lab grade` into it resumes, and every other command works on it.
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labhelpers.assignment import ASSIGNMENT, RELEASE_DIRECTORY, SOURCE_DIRECTORY, SUBMITTED_DIRECTORY
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE
from labhelpers.grading.ledger import STATUS_FILE, Ledger
from labhelpers.grading.overrides import COLUMNS as OVERRIDE_COLUMNS
from labhelpers.grading.overrides import OVERRIDES_FILE
from labhelpers.grading.shards import ShardRecord

MERGED_FILE = "merged.json"
"""A merged folder's record: the shards it was made of (a merge may replace only a folder holding one)."""
STUDENT_AREAS = (SUBMITTED_DIRECTORY, "tidied", "autograded", "feedback")
"""The course's folders holding one subfolder per student."""


@dataclass
class Merged:
    """What a merge made.

    Attributes:
        out_dir: the class's grading folder.
        shards: the shards' records, in shard order.
        students: how many students each shard brought, in shard order.
    """

    out_dir: Path
    shards: list[ShardRecord] = field(default_factory=list)
    students: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """Return the lines `dora-lab merge` prints."""
        parts = ", ".join(f"{record.shard}: {n}" for record, n in zip(self.shards, self.students))
        return (
            f"merged {len(self.shards)} shards ({sum(self.students)} students; {parts}) into {self.out_dir}: "
            f"grades.csv, feedback/, report.html"
        )


def check_shards(folders: list[Path]) -> list[ShardRecord]:
    """Read every shard's record; refuse shards that are not all N parts of one class graded alike.

    Returns:
        The records, in the order of `folders`.
    """
    records = [ShardRecord.read(folder) for folder in folders]
    if not records:
        raise LabGradingError("give the shards' folders: dora-lab merge SHARD_DIR… --out OUT_DIR")
    first = records[0]
    for what, says in (
        ("secret", "each shard needs the same --secret FILE"),
        ("source", "each shard needs the same instructor notebook (solutions/)"),
        ("release", "the release differs: grade every shard with the same nbgrader"),
        ("version", "the judges, probes, libraries or settings (time-outs, memory, sandbox) differ: grade every "
         "shard with the same lab and options"),
    ):  # fmt: skip
        differ = [
            str(folder) for folder, record in zip(folders, records) if getattr(record, what) != getattr(first, what)
        ]
        if differ:
            raise LabGradingError(f"{', '.join(differ)} were not graded like {folders[0]}: {says}")
    counts = {record.part.count for record in records}
    if len(counts) > 1:
        raise LabGradingError(f"the shards split the class differently ({', '.join(r.shard for r in records)})")
    count = counts.pop()
    indices = [record.part.index for record in records]
    twice = sorted({index for index in indices if indices.count(index) > 1})
    missing = [index for index in range(count) if index not in indices]
    if twice or missing:
        raise LabGradingError(
            "a class's merge needs each of its shards once: "
            + "; ".join(
                [f"shard {i}/{count} given twice" for i in twice] + [f"shard {i}/{count} missing" for i in missing]
            )
        )
    return records


def _prepare_out(out_dir: Path, first: Path) -> None:
    """Make OUT_DIR a new grading folder holding the first shard's course (without students) and secret."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MERGED_FILE).is_file():
        raise LabGradingError(f"--out {out_dir} is not empty: give a new folder (or one an earlier merge wrote)")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    out_dir.chmod(0o700)
    for part in (SOURCE_DIRECTORY, RELEASE_DIRECTORY):
        shutil.copytree(first / "course" / part, out_dir / "course" / part)
    shutil.copy2(first / SECRET_FILE, out_dir / SECRET_FILE)


def _make_gradebook(out_dir: Path, first: Path) -> None:
    """Create OUT_DIR's gradebook with the assignment's cells (nbgrader generate_assignment), as the shards' has."""
    import sqlite3

    from labhelpers.grading.course import (
        course_config,
        generate_assignment,
        read_course_settings,
        write_course_settings,
    )

    course, db_path = out_dir / "course", out_dir / "gradebook.db"
    generate_assignment(course_config(course, db_path), use_database=True)
    with sqlite3.connect(db_path) as connection:  # as prepare_course: workers write while others read
        connection.execute("PRAGMA journal_mode=WAL")
    ours = ("CourseDirectory", "Autograde", "GenerateFeedback")
    kept = {name: value for name, value in read_course_settings(first / "course").items() if name not in ours}
    write_course_settings(course, db_path, kept)  # the late-penalty policy set on the first shard, if any


def _copy_grades(shard: Path, out_dir: Path, student_ids: list[str]) -> None:
    """Copy the students' submissions, grades and comments from a shard's gradebook (nbgrader's Gradebook API)."""
    from nbgrader.api import Gradebook

    from labhelpers.assignment import COURSE_ID

    with warnings.catch_warnings(), Gradebook(f"sqlite:///{shard / 'gradebook.db'}", COURSE_ID) as source:
        warnings.simplefilter("ignore")  # nbgrader's submission creation triggers SQLAlchemy autoflush warnings
        with Gradebook(f"sqlite:///{out_dir / 'gradebook.db'}", COURSE_ID) as target:
            duedate = source.find_assignment(ASSIGNMENT).duedate
            if duedate is not None:
                target.update_or_create_assignment(ASSIGNMENT, duedate=duedate)
            for student_id in student_ids:
                student = source.find_student(student_id)
                target.update_or_create_student(
                    student_id, **_columns(student, ("first_name", "last_name", "email", "lms_user_id"))
                )
                submission = source.find_submission(ASSIGNMENT, student_id)
                target.update_or_create_submission(
                    ASSIGNMENT, student_id, **_columns(submission, ("timestamp", "extension"))
                )
                for notebook in submission.notebooks:
                    _copy_notebook(notebook, target.find_submission_notebook(notebook.name, ASSIGNMENT, student_id))
            target.db.commit()


def _columns(record, names: tuple[str, ...]) -> dict:
    return {name: getattr(record, name) for name in names}


def _copy_notebook(source, target) -> None:
    """Copy one submitted notebook's flags, late penalty, grades and comments onto its copy in another gradebook."""
    target.flagged, target.late_submission_penalty = source.flagged, source.late_submission_penalty
    grades = {grade.name: grade for grade in target.grades}
    for grade in source.grades:
        copy = grades[grade.name]
        copy.auto_score, copy.manual_score = grade.auto_score, grade.manual_score
        copy.extra_credit, copy.needs_manual_grade = grade.extra_credit, grade.needs_manual_grade
    comments = {comment.name: comment for comment in target.comments}
    for comment in source.comments:
        comments[comment.name].auto_comment = comment.auto_comment
        comments[comment.name].manual_comment = comment.manual_comment


def _copy_files(shard: Path, out_dir: Path, student_ids: list[str]) -> None:
    """Copy each student's graded files (submitted, tidied, autograded, feedback, the worker's result)."""
    for area in STUDENT_AREAS:
        for student_id in student_ids:
            folder = shard / "course" / area / student_id
            if folder.is_dir():
                shutil.copytree(folder, out_dir / "course" / area / student_id, symlinks=True)
    (out_dir / "course" / "results").mkdir(exist_ok=True)
    for student_id in student_ids:
        result = shard / "course" / "results" / f"{student_id}.json"
        if result.is_file():
            shutil.copy2(result, out_dir / "course" / "results" / result.name)


def _merge_overrides(folders: list[Path], out_dir: Path) -> None:
    """Concatenate the shards' overrides.csv files, if any, into OUT_DIR's."""
    rows = []
    for folder in folders:
        if (folder / OVERRIDES_FILE).is_file():
            with open(folder / OVERRIDES_FILE, newline="", encoding="utf-8-sig") as handle:
                rows += list(csv.DictReader(handle))
    if rows:
        with open(out_dir / OVERRIDES_FILE, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=OVERRIDE_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def merge(folders: list[Path], out_dir: Path) -> Merged:
    """Merge the shards' grading folders into one class's grading folder.

    Args:
        folders: the --out folders of `dora-lab grade --shard i/N`, every i of one N once.
        out_dir: a new folder (or one an earlier merge wrote, which is replaced).

    Returns:
        What was merged. Raises LabGradingError, before writing anything, for shards that are not one class's.
    """
    from labhelpers.grading.export import write_grades_csv
    from labhelpers.grading.feedback import publish_feedback
    from labhelpers.grading.report import write_report

    folders, out_dir = [folder.resolve() for folder in folders], out_dir.resolve()
    if out_dir in folders:
        raise LabGradingError(f"--out {out_dir} is one of the shards: give a new folder")
    records = check_shards(folders)
    ledgers = [Ledger.read(folder) for folder in folders]
    seen: dict[str, Path] = {}
    for folder, ledger in zip(folders, ledgers):
        for student_id in ledger.entries:
            if student_id in seen:
                raise LabGradingError(f"{student_id} is graded in {seen[student_id]} and in {folder}: one shard each")
            seen[student_id] = folder
    order = sorted(range(len(folders)), key=lambda i: records[i].part.index)
    _prepare_out(out_dir, folders[order[0]])
    _make_gradebook(out_dir, folders[order[0]])
    merged = Ledger(out_dir / STATUS_FILE)
    result = Merged(out_dir)
    for i in order:
        student_ids = sorted(ledgers[i].entries)
        _copy_grades(folders[i], out_dir, student_ids)
        _copy_files(folders[i], out_dir, student_ids)
        merged.entries.update(ledgers[i].entries)
        result.shards.append(records[i])
        result.students.append(len(student_ids))
    merged.write()
    _merge_overrides(folders, out_dir)
    (out_dir / MERGED_FILE).write_text(json.dumps([asdict(record) for record in result.shards], indent=1) + "\n")
    publish_feedback(out_dir)
    write_grades_csv(out_dir)
    write_report(out_dir)
    return result
