"""The grading ledger (status.json): what it writes, what it reads back, and when a grade is current."""

from __future__ import annotations

import json
import re

import pytest

from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry, lab_version, submission_key

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


def test_the_lab_version_names_the_package_and_a_digest_of_its_sources():
    assert re.fullmatch(r".+\+[0-9a-f]{12}", lab_version()) and lab_version() == lab_version()
