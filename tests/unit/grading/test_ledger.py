"""The grading ledger (status.json): what it writes, what it reads back, and when a grade is current."""

from __future__ import annotations

import ast
import json
import re
import shutil

import pytest

from labhelpers.grading.ledger import (
    GRADE_DECIDING,
    PACKAGE,
    STATUS_FILE,
    Ledger,
    LedgerEntry,
    deciding_files,
    lab_version,
    submission_key,
)

ZEROED = LedgerEntry(["no notebook submitted (expected dora_lab.ipynb)"], "k1")
GRADED = LedgerEntry(["repaired: x"], "k2", 12.5, {"notebook": 8.0, "probes": 3.1, "judge": 0.4, "feedback": 1.0})


def test_a_ledger_round_trips_through_status_json(tmp_path):
    Ledger(tmp_path / STATUS_FILE, {"ben": GRADED, "ana": ZEROED}).write()
    assert Ledger.read(tmp_path).entries == {"ana": ZEROED, "ben": GRADED}
    # The file keeps its format: sorted keys, one space of indent, seconds and phases only for a worker's grade.
    assert (tmp_path / STATUS_FILE).read_text() == json.dumps(
        {
            "ana": {"key": "k1", "status": ["no notebook submitted (expected dora_lab.ipynb)"]},
            "ben": {
                "key": "k2",
                "phases": {"feedback": 1.0, "judge": 0.4, "notebook": 8.0, "probes": 3.1},
                "seconds": 12.5,
                "status": ["repaired: x"],
            },
        },
        indent=1,
        sort_keys=True,
    )
    assert not (tmp_path / f"{STATUS_FILE}.tmp").exists()


def test_no_status_file_is_an_empty_ledger(tmp_path):
    ledger = Ledger.read(tmp_path)
    assert len(ledger) == 0 and not ledger and ledger.status("ana") == []


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '"a string"', ""], ids=["broken_json", "a_list", "a_string", "empty_file"]
)
def test_a_corrupt_status_file_is_an_empty_ledger(tmp_path, text):
    (tmp_path / STATUS_FILE).write_text(text)
    assert Ledger.read(tmp_path).entries == {}


def test_entries_the_grader_did_not_write_are_dropped_and_the_others_kept(tmp_path):
    good = {"status": [], "key": "k"}
    (tmp_path / STATUS_FILE).write_text(
        json.dumps(
            {
                "ana": good,
                "no_key": {"status": []},
                "status_not_a_list": {"status": "ok", "key": "k"},
                "not_a_dict": [1],
                "seconds_a_word": {**good, "seconds": "fast"},
                "phases_a_list": {**good, "phases": [1]},
            }
        )
    )
    assert Ledger.read(tmp_path).entries == {"ana": LedgerEntry([], "k")}


def test_keep_only_and_forget_drop_students(tmp_path):
    ledger = Ledger(tmp_path / STATUS_FILE, {"ana": ZEROED, "ben": GRADED, "cat": ZEROED})
    ledger.keep_only(["ben", "cat", "dan"])
    assert sorted(ledger.entries) == ["ben", "cat"]
    ledger.forget("cat")
    ledger.forget("nobody")
    assert list(ledger.entries) == ["ben"] and "ben" in ledger and "cat" not in ledger


def test_a_grade_is_current_only_with_the_same_key_and_its_result_kept(tmp_path):
    result = tmp_path / "ben.json"
    ledger = Ledger(tmp_path / STATUS_FILE, {"ana": ZEROED, "ben": GRADED})
    assert not ledger.is_current("ben", "k2", result)  # result file gone: graded again
    result.write_text("{}")
    assert ledger.is_current("ben", "k2", result)
    assert not ledger.is_current("ben", "changed", result)
    assert ledger.is_current("ana", "k1", None)  # nothing to grade: the key alone decides
    assert not ledger.is_current("ana", "changed", None)
    assert not ledger.is_current("cat", "k1", None)


def test_the_key_changes_with_everything_a_grade_depends_on(tmp_path):
    notebook = tmp_path / "dora_lab.ipynb"
    notebook.write_text("{}")
    key = submission_key(notebook, "2026-11-20 10:00:00 UTC", b"source", "1.0+abc")
    assert key == submission_key(notebook, "2026-11-20 10:00:00 UTC", b"source", "1.0+abc")
    changed = [
        submission_key(notebook, None, b"source", "1.0+abc"),
        submission_key(notebook, "2026-11-20 10:00:00 UTC", b"other source", "1.0+abc"),
        submission_key(notebook, "2026-11-20 10:00:00 UTC", b"source", "1.1+abc"),
        submission_key(None, "2026-11-20 10:00:00 UTC", b"source", "1.0+abc"),
    ]
    notebook.write_text('{"cells": []}')
    changed.append(submission_key(notebook, "2026-11-20 10:00:00 UTC", b"source", "1.0+abc"))
    assert len({key, *changed}) == 6


def test_the_lab_version_names_the_oracles_and_a_digest_of_what_decides_a_grade():
    assert (
        re.fullmatch(r"peft .+, torch .+, nbgrader .+\+[0-9a-f]{12}", lab_version()) and lab_version() == lab_version()
    )


@pytest.fixture
def package(tmp_path):
    """A copy of the lab's package (its Python files) to edit."""
    shutil.copytree(PACKAGE, tmp_path / "labhelpers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path / "labhelpers"


# (what is edited, whether it decides a grade): the judges, probes and scoring code do; figures, training, the
# feedback's wording, the report and the ledger itself do not.
EDITS = [
    ("checks/core.py", True),
    ("checks/decompose.py", True),
    ("probes/runner.py", True),
    ("seeding.py", True),
    ("grading/judging.py", True),
    ("grading/calls.py", True),
    ("grading/matching/__init__.py", True),
    ("grading/sandbox/__init__.py", True),
    ("grading/worker.py", True),
    ("plots/__init__.py", False),
    ("training/loop.py", False),
    ("grading/feedback.py", False),
    ("grading/report/page.py", False),
    ("grading/ledger.py", False),
    ("cli/grading.py", False),
]


@pytest.mark.parametrize("edited, decides", EDITS, ids=[edit for edit, _ in EDITS])
def test_only_an_edit_of_what_decides_a_grade_changes_the_version(package, edited, decides):
    before = lab_version(package)
    with open(package / edited, "a") as handle:
        handle.write("\n# edited\n")
    assert (lab_version(package) != before) == decides


def test_every_part_that_decides_a_grade_exists():
    for part in GRADE_DECIDING:
        assert (PACKAGE / part).exists(), f"{part} is listed in GRADE_DECIDING but not in the package"


def test_the_judges_and_probes_import_nothing_of_the_lab_outside_what_decides_a_grade():
    """A module they import but the version does not cover would change grades without regrading anyone."""
    covered = {path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for path in deciding_files()}
    covered = {name.removesuffix(".__init__") for name in covered} | {"errors"}
    for path in deciding_files():
        if not path.relative_to(PACKAGE).as_posix().startswith(("checks/", "probes/", "seeding")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labhelpers."):
                module = node.module.removeprefix("labhelpers.")
                assert module in covered or f"{module}.__init__" in covered, f"{path.name} imports {node.module}"
