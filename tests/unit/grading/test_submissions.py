"""Finding the submissions of a folder: where each student's notebook is, and which of them can be graded.

The finder's rules are a table of named cases (plain and nbgrader's collected layout, links, odd names); then the
notebooks the grader refuses, each with the status it writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.submissions import (
    SECRET_FILE,
    TIMESTAMP_FILE,
    discover_submissions,
    find_submissions,
)

NB = "{}"  # the finder never parses a notebook: validity is the grader's check
WHEN = "2026-11-29 12:00:00.000000 UTC"


def build(root: Path, layout: dict[str, str | None]) -> None:
    """Create `layout` under `root`: {relative path: text, "->target" for a link, or None for an empty folder}."""
    for relative, content in layout.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content)


# name, layout, expected [(student_id, notebook or None, timestamp or None, [problem fragments])]
CASES = [
    ("plain", {"ana/dora_lab.ipynb": NB}, [("ana", "ana/dora_lab.ipynb", None, [])]),
    (
        "nbgrader_collected",
        {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": WHEN, "ana/dora/submission_secret.txt": "s"},
        [("ana", "ana/dora/dora_lab.ipynb", WHEN, [])],
    ),
    (
        "plain_renamed",
        {"ana/lab3.ipynb": NB},
        [("ana", "ana/lab3.ipynb", None, ["notebook named lab3.ipynb, graded as dora_lab.ipynb"])],
    ),
    (
        "collected_renamed",
        {"ana/dora/copy.ipynb": NB},
        [("ana", "ana/dora/copy.ipynb", None, ["notebook named dora/copy.ipynb, graded as dora_lab.ipynb"])],
    ),
    (
        "right_name_beside_others",
        {"ana/dora_lab.ipynb": NB, "ana/scratch.ipynb": NB},
        [("ana", "ana/dora_lab.ipynb", None, [])],
    ),
    (
        "several_others",
        {"ana/a.ipynb": NB, "ana/b.ipynb": NB},
        [("ana", None, None, ["no dora_lab.ipynb and 2 other notebooks: cannot tell which to grade"])],
    ),
    ("empty_folder", {"ana": None}, [("ana", None, None, ["no notebook submitted"])]),
    (
        "notebook_is_a_link",
        {"ana/dora_lab.ipynb": "->/etc/passwd"},
        [("ana", None, None, ["dora_lab.ipynb is not a regular file (links are not followed)"])],
    ),
    (
        "student_folder_is_a_link",
        {"ana": "->/etc"},
        [("ana", None, None, ["ana/ is a link (links are not followed)"])],
    ),
    (
        "assignment_folder_is_a_link",
        {"ana/dora": "->/etc"},
        [("ana", None, None, ["dora/ is a link (links are not followed)", "no notebook submitted"])],
    ),
    (
        "unusable_folder_name",
        {"Ana Smith!/dora_lab.ipynb": NB},
        [("Ana_Smith_", "Ana Smith!/dora_lab.ipynb", None, ["'Ana Smith!' is not a usable student id"])],
    ),
    (
        "hidden_folders_and_files_are_not_students",
        {".ipynb_checkpoints/dora_lab.ipynb": NB, "notes.txt": "x", "ana/dora_lab.ipynb": NB},
        [("ana", "ana/dora_lab.ipynb", None, [])],
    ),
    (
        "both_layouts_nbgrader_wins",
        {"ana/dora_lab.ipynb": NB, "ana/dora/dora_lab.ipynb": NB},
        [("ana", "ana/dora/dora_lab.ipynb", None, ["ignored dora_lab.ipynb beside it"])],
    ),
    (
        "unreadable_timestamp",
        {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": "yesterday, roughly"},
        [("ana", "ana/dora/dora_lab.ipynb", None, ["timestamp.txt holds 'yesterday, roughly', not a time"])],
    ),
    (
        "students_sorted_each_on_its_own",
        {"ben/dora_lab.ipynb": NB, "ana/dora/dora_lab.ipynb": NB, "cat": None},
        [
            ("ana", "ana/dora/dora_lab.ipynb", None, []),
            ("ben", "ben/dora_lab.ipynb", None, []),
            ("cat", None, None, ["no notebook submitted"]),
        ],
    ),
]


@pytest.mark.parametrize("layout, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_find_submissions(tmp_path, layout, expected):
    build(tmp_path, layout)
    found = find_submissions(tmp_path)
    assert [submission.student_id for submission in found] == [row[0] for row in expected]
    for submission, (_, notebook, timestamp, problems) in zip(found, expected):
        assert submission.notebook == (tmp_path / notebook if notebook else None)
        assert submission.timestamp == timestamp
        assert len(submission.problems) == len(problems), submission.problems
        for problem, fragment in zip(submission.problems, problems):
            assert fragment in problem


@pytest.mark.parametrize(
    "layout, files",
    [
        (
            {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": WHEN, "ana/dora/submission_secret.txt": "s"},
            [TIMESTAMP_FILE, SECRET_FILE],
        ),
        (
            {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": "soon", "ana/dora/submission_secret.txt": "s"},
            [SECRET_FILE],
        ),
        ({"ana/dora/dora_lab.ipynb": NB, "ana/dora/submission_secret.txt": "->/etc/hostname"}, []),
        ({"ana/dora_lab.ipynb": NB}, []),
        ({"ana": None}, []),
    ],
    ids=["collected", "bad_timestamp_left_out", "linked_secret_left_out", "plain", "nothing_submitted"],
)
def test_exchange_files_to_carry_beside_the_notebook(tmp_path, layout, files):
    build(tmp_path, layout)
    (found,) = find_submissions(tmp_path)
    assert [path.name for path in found.exchange_files] == files


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"a b/dora_lab.ipynb": NB, "a_b/dora_lab.ipynb": NB}, "two folders map to the student id 'a_b'"),
        ({}, "is not a folder"),
    ],
    ids=["two_folders_one_id", "not_a_folder"],
)
def test_find_submissions_refuses(tmp_path, layout, message):
    build(tmp_path, layout)
    folder = tmp_path if layout else tmp_path / "missing"
    with pytest.raises(LabGradingError, match=message):
        find_submissions(folder)


VALID = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'

# name, layout, the notebook graded (or None), the whole status of the submission
DISCOVERED = [
    ("valid", {"ana/dora_lab.ipynb": VALID}, "ana/dora_lab.ipynb", []),
    (
        "corrupt_json",
        {"ana/dora_lab.ipynb": '{"cells": ['},
        None,
        ["dora_lab.ipynb is not a valid notebook (Notebook does not appear to be JSON: '{\"cells\": [')"],
    ),
    (
        "not_a_notebook",
        {"ana/dora_lab.ipynb": '{"cells": "none"}'},
        None,
        ["dora_lab.ipynb is not a valid notebook"],
    ),
    (
        "renamed",
        {"ana/my_dora_lab.ipynb": VALID},
        "ana/my_dora_lab.ipynb",
        ["notebook named my_dora_lab.ipynb, graded as dora_lab.ipynb"],
    ),
    (
        "a_link",
        {"ana/dora_lab.ipynb": "->../elsewhere.ipynb", "elsewhere.ipynb": VALID},
        None,
        ["dora_lab.ipynb is not a regular file (links are not followed)"],
    ),
    (
        "nothing",
        {"ana": None},
        None,
        ["no notebook submitted (expected dora_lab.ipynb or dora/dora_lab.ipynb in ana/)"],
    ),
]


@pytest.mark.parametrize(
    "layout, notebook, status", [case[1:] for case in DISCOVERED], ids=[case[0] for case in DISCOVERED]
)
def test_discover_submissions_keeps_only_notebooks_it_can_grade(tmp_path, layout, notebook, status):
    build(tmp_path, layout)
    (submission,) = discover_submissions(tmp_path)
    assert submission.student_id == "ana"
    assert submission.notebook == (tmp_path / notebook if notebook else None)
    assert len(submission.status) == len(status), submission.status
    for line, expected in zip(submission.status, status):
        assert line.startswith(expected)


def test_a_binary_file_is_not_a_valid_notebook(tmp_path):
    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / "dora_lab.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (submission,) = discover_submissions(tmp_path)
    assert submission.notebook is None
    assert submission.status == [
        "dora_lab.ipynb is not a valid notebook ('utf-8' codec can't decode byte 0x89 in position 0: "
        "invalid start byte)"
    ]


def test_discover_submissions_refuses_a_missing_folder(tmp_path):
    with pytest.raises(LabGradingError, match="is not a folder: give the folder holding one <student_id>/ folder"):
        discover_submissions(tmp_path / "missing")
