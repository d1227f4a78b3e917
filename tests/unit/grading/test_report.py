"""The class report from a grading folder whose every verdict is known: exact counts, a page with its figures."""

from __future__ import annotations

import base64
import json
import re

import pytest

from labhelpers.assignment import ASSIGNMENT
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry
from labhelpers.grading.overrides import OVERRIDES_FILE
from labhelpers.grading.report import REPORT_JSON, build_report, write_report
from labhelpers.grading.report.records import status_kind
from tests.support.gradebook import CELLS, give_scores, write_grading_folder

TESTS = [cell.grade_id for cell in CELLS if cell.autograded]
# Each student's failed tests and the named mistakes the judge recognised there; every other test passed.
FAILED = {
    "ana": {},
    "ben": {"decompose_weight_matches_definition": ["norm_over_dim0"], "dora_linear_matches_peft": ["unscaled"]},
    "cat": {"decompose_weight_matches_definition": ["norm_over_dim0"], "train_one_epoch_matches_reference": []},
    "dan": {"dora_linear_matches_peft": ["unscaled", "dropout_everywhere"]},
}
STATUS = {
    "ana": [],
    "ben": ["repaired: a cell split in two", "the notebook's own run disagreed on dora_linear_matches_peft"],
    "cat": ["time-out (120 s) in cell train_loop", "the kernel was killed by signal 9 in cell train_loop"],
    "dan": ["repaired: a cell merged"],
    "eve": ["no notebook submitted (expected dora_lab.ipynb)"],
}  # fmt: skip
PHASES = {"notebook": 20.0, "probes": 6.0, "judge": 1.0, "feedback": 1.0}


def _verdict(grade_id: str, student: str) -> dict:
    failed = grade_id in FAILED[student]
    mistakes = FAILED[student].get(grade_id, [])
    return {"grade_id": grade_id, "passed": not failed, "message": f"{grade_id}: {'wrong' if failed else 'ok'}",
            "reason": "", "details": [], "mistakes": mistakes}  # fmt: skip


def _fill(book) -> None:
    for student in STATUS:
        book.update_or_create_student(student)
        book.update_or_create_submission(ASSIGNMENT, student)
    for student in STATUS:
        give_scores(book, student, {1, 2, 3, 4, 5} if student in FAILED else set(), manual_share=1.0)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = write_grading_folder(tmp_path_factory.mktemp("graded"), _fill)
    entries = {s: LedgerEntry(lines, "k", 28.0, dict(PHASES)) for s, lines in STATUS.items() if s in FAILED}
    entries["eve"] = LedgerEntry(STATUS["eve"], "k")
    Ledger(folder / STATUS_FILE, entries).write()
    results = folder / "course" / "results"
    results.mkdir()
    for student in FAILED:
        verdicts = {grade_id: _verdict(grade_id, student) for grade_id in TESTS}
        (results / f"{student}.json").write_text(json.dumps({"student_id": student, "verdicts": verdicts}))
    (folder / OVERRIDES_FILE).write_text("student,test,points,reason\nben,dora_linear_matches_peft,5,equivalent\n")
    return folder


def test_pass_rates_count_every_verdict_and_those_not_judged(graded):
    report = build_report(graded)
    by_test = {test.grade_id: test for test in report.tests}
    assert list(by_test) == TESTS and report.students == 5
    decompose = by_test["decompose_weight_matches_definition"]
    assert (decompose.passed, decompose.failed, decompose.not_judged) == (["ana", "dan"], ["ben", "cat"], ["eve"])
    assert decompose.pass_rate == 0.5 and decompose.unexplained == []
    epoch = by_test["train_one_epoch_matches_reference"]
    assert epoch.pass_rate == 0.75 and epoch.unexplained == ["cat"]
    assert by_test["magnitude_direction_change_matches_paper"].pass_rate == 1.0


def test_each_named_mistake_is_counted_with_its_students_most_frequent_first(graded):
    mistakes = build_report(graded).mistakes
    assert [(m.name, m.count, m.students, m.tests) for m in mistakes] == [
        ("norm_over_dim0", 2, ["ben", "cat"], ["decompose_weight_matches_definition"]),
        ("unscaled", 2, ["ben", "dan"], ["dora_linear_matches_peft"]),
        ("dropout_everywhere", 1, ["dan"], ["dora_linear_matches_peft"]),
    ]
    assert mistakes[0].example == "decompose_weight_matches_definition: wrong"


def test_statuses_are_grouped_by_kind_with_the_overrides(graded):
    statuses = {s.kind: s.students for s in build_report(graded).statuses}
    assert statuses == {
        "override": ["ben"],
        "repaired notebook": ["ben", "dan"],
        "time-out": ["cat"],
        "killed or stopped": ["cat"],
        "disagreement with the notebook's own run": ["ben"],
        "no gradable notebook": ["eve"],
    }


@pytest.mark.parametrize(
    "line, kind",
    [
        ("graded without a sandbox (--no-sandbox): student code ran as …", "graded without a sandbox"),
        ("submission time limit (600 s) exceeded: 0 points", "time-out"),
        ("grader error (the worker stopped): 0 points, please review", "killed or stopped"),
        ("the memory cap was reached in cell #12", "killed or stopped"),
        ("answer not found: dora_linear (its tests score 0)", "answer not found"),
        ("used the lab's reference code or PEFT's DoRA layer (no points): dora_linear", "used reference code"),
        ("the grader could not judge, please review: t", "grader error"),
        ("something new", "other"),
    ],
)  # fmt: skip
def test_each_status_line_has_its_kind(line, kind):
    assert status_kind(line) == kind


def test_time_per_phase_covers_the_submissions_workers_graded(graded):
    phases = {p.phase: p for p in build_report(graded).phases}
    assert list(phases) == ["notebook", "probes", "judge", "feedback", "submission"]
    assert (
        phases["notebook"].submissions == 4 and phases["notebook"].mean == 20.0 and phases["submission"].total == 112
    )


def test_the_page_has_every_section_with_its_figure_and_the_json_beside_it(graded, tmp_path):
    page = write_report(graded, tmp_path)
    text = page.read_text()
    for section in ("scores", "tests", "mistakes", "statuses", "phases", "overrides"):
        assert f"<section id='{section}'>" in text
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(images) == 4 and all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "norm_over_dim0" in text and "equivalent" in text
    saved = json.loads((tmp_path / REPORT_JSON).read_text())
    assert saved["students"] == 5 and saved["mistakes"][0]["students"] == ["ben", "cat"]
    assert saved["overrides"] == [
        {"student": "ben", "test": "dora_linear_matches_peft", "points": 5.0, "reason": "equivalent"}
    ]
