"""Merging the folders of a class's shards: one grading folder with every shard's grades (nbgrader's Gradebook API),
ledger, feedback and report — and a clear refusal of shards that are not one class's.

The shards' gradebooks are filled through nbgrader's API without grading anything (tests/support/gradebook.py); the
merge of shards graded for real is in tests/e2e/test_grading.py.
"""

from __future__ import annotations

import json
import shutil

import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, RELEASE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE
from labhelpers.grading.export import grade_rows
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry
from labhelpers.grading.merge import merge
from labhelpers.grading.selection import Shard
from labhelpers.grading.shards import ShardRecord
from tests.support.gradebook import give_scores, write_grading_folder

CLASS = ["ana", "ben", "cat", "dan", "eve", "fay"]
SECRET = "5e" * 32


def _shard(root, index: int, count: int = 2, secret: str = SECRET, version: str = "v1"):
    """A shard's grading folder: its students graded (gradebook, ledger, result, feedback page), its record."""
    students = [s for s in CLASS if Shard(index, count).holds(s)]

    def fill(book):
        for number, student in enumerate(students):
            book.update_or_create_student(student, first_name=student.title())
            book.update_or_create_submission(ASSIGNMENT, student)
            give_scores(book, student, set(range(1, 2 + number % 5)), manual_share=None if number % 2 else 0.5)

    folder = write_grading_folder(root / f"shard{index}", fill)
    release = folder / "course" / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    release.parent.mkdir(parents=True)
    shutil.copyfile(RELEASE_NOTEBOOK, release)
    (folder / SECRET_FILE).write_text(secret + "\n")
    Ledger(
        folder / STATUS_FILE,
        {s: LedgerEntry([f"note on {s}"], f"key-{s}", 20.0, {"notebook": 15.0}) for s in students},
    ).write()
    for student in students:
        page = folder / "course" / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"<html>feedback of {student}</html>")
        result = folder / "course" / "results" / f"{student}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps({"student_id": student, "verdicts": {}}))
    ShardRecord.of(folder, Shard(index, count), version).write(folder)
    return folder, students


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return [_shard(root, index) for index in range(2)]


def test_the_merged_folder_holds_every_shards_grades_ledger_and_feedback(shards, tmp_path):
    folders = [folder for folder, _ in shards]
    merged = merge(folders[::-1], tmp_path / "class")  # in any order
    out = merged.out_dir
    assert merged.students == [len(students) for _, students in shards] and sum(merged.students) == len(CLASS)
    expected = sorted((row for folder in folders for row in grade_rows(folder)[1]), key=lambda row: row["student_id"])
    assert grade_rows(out)[1] == expected
    assert (out / "grades.csv").is_file() and (out / "report.html").is_file()
    assert sorted(Ledger.read(out).entries) == CLASS and Ledger.read(out).status("ana") == ["note on ana"]
    for student in CLASS:
        assert (out / "feedback" / student / f"{NOTEBOOK}.html").read_text() == f"<html>feedback of {student}</html>"
        assert (out / "course" / "results" / f"{student}.json").is_file()
    assert (out / SECRET_FILE).read_text().strip() == SECRET
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}", COURSE_ID) as book:
        assert book.find_student("ana").first_name == "Ana"
        pending = {s: book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, s).needs_manual_grade for s in CLASS}
    assert sorted(s for s, needs in pending.items() if needs) == sorted(
        s for _, students in shards for n, s in enumerate(students) if n % 2
    )
    again = merge(folders, out)  # a folder an earlier merge wrote is replaced
    assert grade_rows(again.out_dir)[1] == expected


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"secret": "77" * 32}, "were not graded like .*: each shard needs the same --secret FILE"),
        ({"version": "v2"}, "the judges, probes, libraries or settings .* differ"),
        ({"count": 3}, "the shards split the class differently"),
    ],
    ids=["secret", "version", "count"],
)
def test_shards_graded_differently_are_refused_before_anything_is_written(shards, tmp_path, change, phrase):
    count = change.pop("count", 2)
    other, _ = _shard(tmp_path, 1, count=count, **change)
    with pytest.raises(LabGradingError, match=phrase):
        merge([shards[0][0], other], tmp_path / "class")
    assert not (tmp_path / "class").exists()


def test_a_missing_or_repeated_shard_and_a_used_folder_are_refused(shards, tmp_path):
    first, second = shards[0][0], shards[1][0]
    with pytest.raises(LabGradingError, match="shard 1/2 missing"):
        merge([first], tmp_path / "class")
    with pytest.raises(LabGradingError, match="shard 0/2 given twice; shard 1/2 missing"):
        merge([first, first], tmp_path / "class")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "grades.csv").write_text("mine")
    with pytest.raises(LabGradingError, match="is not empty: give a new folder"):
        merge([first, second], tmp_path / "used")
    with pytest.raises(LabGradingError, match="is not a shard's folder"):
        merge([first, tmp_path / "used"], tmp_path / "class")
