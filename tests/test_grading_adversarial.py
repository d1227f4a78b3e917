"""Hostile submissions cost only their author: each case's exact score and status, others and the project untouched.

Every adversarial student answers Exercises 1-2 like `reference` (correctly, or with a known mistake) and adds
one attack; the class is graded once (--jobs 2) in a session fixture.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from labhelpers.config import PROJECT_ROOT
from labhelpers.grading import GradingOptions, grade
from labhelpers.grading.course import SOURCE_NOTEBOOK
from labhelpers.grading.samples import answered, answers_of_exercises, points_by_exercise, write_submission
from labhelpers.grading.sandbox import probe

pytestmark = [pytest.mark.grading_e2e, pytest.mark.slow, pytest.mark.xdist_group("grading_adversarial")]

TIMEOUT_CELL = 40
CANARY = "graded_by_student.txt"

WRONG_DECOMPOSE = "def decompose_weight(W):\n    m = W.norm(dim=0, keepdim=True)\n    return m, W / m\n"

# Student id -> (extra code appended to an answer cell or replacing it, expected points lost / kept).
# Attack code goes at the end of the Exercise 2 answer cell ("dora_linear") unless said otherwise.
LOOP_IGNORING_CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
# Stops when interrupted: only this cell is lost (its class is defined before the sleep), later tests still run.
SLOW_BUT_INTERRUPTIBLE = "import time\ntime.sleep(10**6)\n"
# 50 MB of output (an endless print loop is an infinite loop: the cell time-out covers it).
FLOOD = "for _ in range(5000):\n    print('spam ' * 2000)\n"
# Address space, not touched pages: the cap (RLIMIT_AS) stops it without stressing the CI machine.
MEMORY_BOMB = "import torch\nhog = []\nwhile True:\n    hog.append(torch.empty(2**28, dtype=torch.uint8))\n"
PATCH_COMPARISONS = (
    "import torch, torch.testing\n"
    "torch.allclose = lambda *a, **k: True\n"
    "torch.equal = lambda *a, **k: True\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
)
PATCH_CHECKS = (
    "import labhelpers.checks as _checks\n"
    "_checks.check_decompose_weight = lambda *a, **k: print('✔')\n"
    "def check_decompose_weight(*args, **kwargs):\n    print('✔ decompose_weight')\n"
)
PATCH_INSIDE = (
    "def decompose_weight(W):\n"
    "    import torch, torch.testing\n"
    "    torch.allclose = lambda *a, **k: True\n"
    "    torch.testing.assert_close = lambda *a, **k: None\n"
    "    m = W.norm(dim=0, keepdim=True)\n"
    "    return m, W / m\n"
)


def write_everywhere(out: Path, submissions: Path) -> str:
    targets = [
        PROJECT_ROOT / CANARY,
        PROJECT_ROOT / "labhelpers" / "checks" / CANARY,
        out / "gradebook.db",
        out / "grades.csv",
        submissions / "reference" / "dora_lab.ipynb",
        SOURCE_NOTEBOOK,
        Path("/root") / CANARY,
    ]
    return (
        "import os, signal\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n        open(path, 'a').write('x')\n        print('W' + 'ROTE', path)\n"
        "    except OSError as error:\n        print('refused', path, error)\n"
        "try:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError as error:\n    print('grader', 'survived', error)\n"
    )


@pytest.fixture(scope="session")
def hostile_class(tmp_path_factory, sst2_dir):
    if not SOURCE_NOTEBOOK.is_file():
        pytest.skip("solutions/dora/dora_lab.ipynb does not exist yet")
    try:
        from labhelpers.checks import check_decompose_weight  # noqa: F401
    except ImportError:
        pytest.skip("labhelpers.checks does not provide the notebook's check functions yet")
    from labhelpers.grading.course import release

    source = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    root = tmp_path_factory.mktemp("course")
    (root / "solutions" / "dora").mkdir(parents=True)
    (root / "solutions" / "dora" / "dora_lab.ipynb").write_bytes(SOURCE_NOTEBOOK.read_bytes())
    student = nbformat.read(release(root), as_version=4)
    good = answers_of_exercises(source, {1, 2})
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("graded")

    def submit(student_id: str, answers: dict[str, str], notebook=None, name="dora_lab.ipynb") -> None:
        write_submission(folder, student_id, answered(notebook or student, {**good, **answers}), name=name)

    def after(cell: str, code: str) -> dict[str, str]:
        return {cell: good[cell] + "\n\n" + code}

    submit("reference", {})
    tampered = answered(student, {})
    deleted = answered(student, {})
    for cell in tampered.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "decompose_weight_matches_definition":
            cell.source = "print('✔ all good')"
    deleted.cells = [
        c
        for c in deleted.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "decompose_weight_matches_definition"
    ]
    submit("tampered_test_cell", {"decompose_weight": WRONG_DECOMPOSE}, notebook=tampered)
    submit("deleted_test_cell", {"decompose_weight": WRONG_DECOMPOSE}, notebook=deleted)
    submit("patched_comparisons", {"decompose_weight": PATCH_COMPARISONS + WRONG_DECOMPOSE})
    submit("patched_checks", {"decompose_weight": PATCH_CHECKS + WRONG_DECOMPOSE})
    submit("patch_inside_answer", {"decompose_weight": PATCH_INSIDE})
    submit("infinite_loop", after("dora_linear", LOOP_IGNORING_CTRL_C))
    submit("slow_cell", after("dora_linear", SLOW_BUT_INTERRUPTIBLE))
    submit("sys_exit", after("decompose_weight", "import sys\nsys.exit(0)\n"))
    submit("os_exit", after("dora_linear", "import os\nos._exit(0)\n"))
    submit("memory_bomb", after("dora_linear", MEMORY_BOMB))
    submit("output_flood", after("dora_linear", FLOOD))
    submit("writes_everywhere", after("decompose_weight", write_everywhere(out, folder)))
    submit("wrong_name", {}, name="my_dora_lab.ipynb")
    (folder / "corrupt_json").mkdir()
    (folder / "corrupt_json" / "dora_lab.ipynb").write_text('{"cells": [')
    (folder / "not_a_notebook").mkdir()
    (folder / "not_a_notebook" / "dora_lab.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "symlink").mkdir()
    (folder / "symlink" / "dora_lab.ipynb").symlink_to(folder / "reference" / "dora_lab.ipynb")

    watched = [SOURCE_NOTEBOOK, folder / "reference" / "dora_lab.ipynb"]
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in watched}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_DATA_DIR", str(sst2_dir))
        patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        path = grade(
            folder,
            out,
            GradingOptions(jobs=2, timeout_cell=TIMEOUT_CELL, timeout_submission=400),
            source_notebook=SOURCE_NOTEBOOK,
        )
    after_hashes = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in watched}
    with open(path, newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    return {"rows": rows, "out": out, "source": source, "unchanged": before == after_hashes}


# (student id, exercises whose points it loses relative to `reference`, its whole status in grades.csv).
EX1 = (1,)
T = TIMEOUT_CELL
REVIEW = "review answer code mentioning: "
CASES = [
    ("tampered_test_cell", EX1, "edited instructor cells restored: decompose_weight_matches_definition"),
    ("deleted_test_cell", EX1, "deleted instructor cells restored: decompose_weight_matches_definition"),
    # The notebook's own check already fails (it compares with references captured before student code runs).
    ("patched_comparisons", EX1, REVIEW + "allclose, assert_close, torch.testing"),
    # The redefined check passes in the notebook; the clean re-check, which never runs the redefinition, fails it.
    (
        "patched_checks",
        EX1,
        "failed the clean re-check: decompose_weight_matches_definition; answer cell 1: 1 top-level "
        "statement(s) ignored; " + REVIEW + "check_, labhelpers.checks",
    ),
    ("patch_inside_answer", EX1, REVIEW + "allclose, assert_close, torch.testing"),
    ("slow_cell", (), f"time-out ({T} s) in cell dora_linear"),
    ("sys_exit", (), REVIEW + "sys.exit"),
    ("output_flood", (), "output truncated in cell dora_linear"),
    ("writes_everywhere", (), REVIEW + "signal."),
    ("wrong_name", (), "notebook named my_dora_lab.ipynb, graded as dora_lab.ipynb"),
]
# A fault in Exercise 2's answer cell: the points earned before it (Exercise 1) stand, every later test fails.
FAULTS = [
    (
        "infinite_loop",
        f"time-out ({T} s) in cell dora_linear; the kernel was stopped: the cell ignored the interrupt "
        f"after its time-out of {T} s in cell dora_linear; " + REVIEW + "signal.",
    ),
    ("os_exit", "the kernel exited with code 0 in cell dora_linear; " + REVIEW + "os._exit"),
    ("memory_bomb", "the memory cap (6 GiB) was reached and still held in cell dora_linear: kernel stopped"),
]
BROKEN = [
    ("corrupt_json", "dora_lab.ipynb is not a valid notebook (Notebook does not appear to be JSON: '{\"cells\": [')"),
    (
        "not_a_notebook",
        "dora_lab.ipynb is not a valid notebook ('utf-8' codec can't decode byte 0x89 in position 0: "
        "invalid start byte)",
    ),
    ("symlink", "dora_lab.ipynb is not a regular file (links are not followed)"),
]


def test_reference_scores_exercises_1_and_2(hostile_class):
    rows, source = hostile_class["rows"], hostile_class["source"]
    by_exercise = points_by_exercise(source)
    assert float(rows["reference"]["score"]) == by_exercise[1] + by_exercise[2]
    assert rows["reference"]["status"] == "ok"


@pytest.mark.parametrize("student_id, lost, status", CASES, ids=[case[0] for case in CASES])
def test_attack_gains_nothing_and_costs_only_its_author(hostile_class, student_id, lost, status):
    rows, source = hostile_class["rows"], hostile_class["source"]
    expected = float(rows["reference"]["score"]) - sum(points_by_exercise(source)[number] for number in lost)
    assert float(rows[student_id]["score"]) == expected
    assert rows[student_id]["status"] == status


@pytest.mark.parametrize("student_id, status", FAULTS, ids=[case[0] for case in FAULTS])
def test_fault_keeps_the_points_earned_before_it(hostile_class, student_id, status):
    row, source = hostile_class["rows"][student_id], hostile_class["source"]
    assert float(row["score"]) == points_by_exercise(source)[1] == float(row["exercise_1"])
    assert row["status"] == status


@pytest.mark.parametrize("student_id, status", BROKEN, ids=[case[0] for case in BROKEN])
def test_unreadable_submission_scores_zero_with_a_reason(hostile_class, student_id, status):
    row = hostile_class["rows"][student_id]
    assert float(row["score"]) == 0 and row["status"] == status
    assert (hostile_class["out"] / "feedback" / student_id / "dora_lab.html").is_file()


def test_no_student_wrote_outside_its_sandbox(hostile_class):
    scratch = Path(tempfile.mkdtemp())
    scratch.chmod(0o711)
    problem = probe(scratch)
    scratch.rmdir()
    if problem:
        pytest.skip(
            f"student code cannot run as its own user here ({problem}): write protection needs root and mount namespaces"
        )
    out = hostile_class["out"]
    assert hostile_class["unchanged"], "a project file, the instructor's notebook or a classmate's submission changed"
    assert not (PROJECT_ROOT / CANARY).exists() and not (PROJECT_ROOT / "labhelpers" / "checks" / CANARY).exists()
    feedback = (out / "feedback" / "writes_everywhere" / "dora_lab.html").read_text()
    assert "WROTE" not in feedback and "grader survived" in feedback
    # The gradebook is intact: every student is in it once, with the reference's score.
    with sqlite3.connect(out / "gradebook.db") as db:
        students = sorted(row[0] for row in db.execute("select id from student"))
    assert students == sorted(hostile_class["rows"])


def test_output_flood_is_truncated_in_the_feedback(hostile_class):
    feedback = hostile_class["out"] / "feedback" / "output_flood" / "dora_lab.html"
    assert feedback.stat().st_size < 5 * 2**20
    assert "output truncated by the grader" in feedback.read_text()
