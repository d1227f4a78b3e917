"""What the student reads: the verdict under each test cell, no path of the grading machine, and the plain pages."""

from __future__ import annotations

import sys

import nbformat
import pytest

from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.feedback import (
    NOTICE_CELL,
    VERDICT_OUTPUT,
    add_notices,
    annotate,
    grader_paths,
    not_graded_page,
    plain_page,
    publish_feedback,
    redact,
    verdict_output,
)
from labhelpers.grading.judging import Verdict
from labhelpers.grading.ledger import STATUS_FILE, Ledger, LedgerEntry

PASSED = Verdict("t_passes", True, "✔ 2 checks of decompose_weight")
FAILED = Verdict("t_fails", False, "magnitude has shape (1, 3); expected (4, 1) <norm over dim=1>")


@pytest.mark.parametrize(
    "verdict, own_run_passed, head, note",
    [
        (PASSED, True, "Grader: passed (3 / 3 points)", ""),
        (FAILED, False, "Grader: failed (0 / 3 points)", ""),
        (
            FAILED,
            True,
            "Grader: failed (0 / 3 points)",
            "Your notebook's own run of this cell passed, but the grader's",
        ),
        (PASSED, False, "Grader: passed (3 / 3 points)", "Your notebook's own run of this cell failed (see above)"),
        (FAILED, None, "Grader: failed (0 / 3 points)", ""),
    ],
    ids=["passed", "failed", "failed_but_own_run_passed", "passed_but_own_run_failed", "not_run"],
)
def test_the_verdict_output_says_the_score_the_message_and_any_disagreement(verdict, own_run_passed, head, note):
    output = verdict_output(verdict, 3, own_run_passed)
    text, page = output["data"]["text/plain"], output["data"]["text/html"]
    assert output["output_type"] == "display_data" and output["metadata"] == {VERDICT_OUTPUT: True}
    assert text.splitlines()[:2] == [head, verdict.message]
    assert (note in text and "the grader's verdict counts." in text) if note else len(text.splitlines()) == 2
    assert head in page and "<norm over dim=1>" not in page  # the message is escaped in the HTML


def test_grader_paths_hide_python_the_lab_and_the_graders_folders_longest_first(tmp_path):
    paths = grader_paths([tmp_path, "/"])
    assert (
        paths[sys.prefix] == "<python>" and paths[str(PROJECT_ROOT)] == "<lab>" and paths[str(tmp_path)] == "<grader>"
    )
    assert "/" not in paths and list(paths) == sorted(paths, key=len, reverse=True)


def test_redact_replaces_every_grading_machine_path(tmp_path):
    paths = grader_paths([tmp_path])
    text = f"File {tmp_path}/scratch/x.py, line 3, in {sys.prefix}/lib/torch/nn.py; see {PROJECT_ROOT}/README.md"
    assert (
        redact(text, paths) == "File <grader>/scratch/x.py, line 3, in <python>/lib/torch/nn.py; see <lab>/README.md"
    )


@pytest.mark.parametrize("ran", [True, False], ids=["notebook_run", "not_run"])
def test_annotate_adds_each_verdict_cleans_every_output_and_returns_the_disagreements(tmp_path, ran):
    def test_cell(grade_id, outputs):
        cell = nbformat.v4.new_code_cell(f"check({grade_id})", outputs=outputs)
        cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "points": 3, "solution": False}
        return cell

    error = nbformat.v4.new_output(
        "error", ename="AssertionError", evalue=f"in {tmp_path}/x", traceback=[str(tmp_path)]
    )
    printed = nbformat.v4.new_output("stream", name="stdout", text=f"read {tmp_path}/data\n")
    old = verdict_output(PASSED, 3, True)  # a verdict left by an earlier grading is replaced
    notebook = nbformat.v4.new_notebook(cells=[test_cell("t_passes", [printed, old]), test_cell("t_fails", [error])])
    path = tmp_path / "autograded.ipynb"
    nbformat.write(notebook, path)

    disagreed = annotate(
        path,
        {"t_passes": PASSED, "t_fails": Verdict("t_fails", True, "✔")},
        {"t_passes": 3, "t_fails": 3},
        grader_paths([tmp_path]),
        ran=ran,
    )

    assert disagreed == (["t_fails"] if ran else [])  # outputs that no run of the grader's made are no evidence
    cells = nbformat.read(path, as_version=4).cells
    assert [len(cell.outputs) for cell in cells] == [2, 2]
    assert cells[0].outputs[0]["text"] == "read <grader>/data\n"
    assert cells[1].outputs[0]["evalue"] == "in <grader>/x" and cells[1].outputs[0]["traceback"] == ["<grader>"]
    assert all(cell.outputs[-1]["metadata"] == {VERDICT_OUTPUT: True} for cell in cells)
    assert str(tmp_path) not in path.read_text()


def test_the_plain_page_lists_the_status_and_every_verdict():
    page = plain_page("ana<", {"t_passes": PASSED, "t_fails": FAILED}, {"t_passes": 3, "t_fails": 2}, ["a & b"])
    assert page == (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>feedback</title></head><body>"
        "<h1>Feedback for ana&lt;</h1><ul><li>a &amp; b</li></ul>"
        "<table border='1' cellpadding='4'><tr><th>test</th><th>points</th><th>grader's verdict</th></tr>"
        "<tr><td>t_passes</td><td>3 / 3</td><td>✔ 2 checks of decompose_weight</td></tr>"
        "<tr><td>t_fails</td><td>0 / 2</td>"
        "<td>magnitude has shape (1, 3); expected (4, 1) &lt;norm over dim=1&gt;</td></tr></table>"
        "</body></html>"
    )


def test_the_not_graded_page_says_0_points_and_why():
    assert not_graded_page(["dora_lab.ipynb is not a valid notebook (<binary>)"]) == (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dora_lab feedback</title></head><body>"
        "<h1>dora_lab: 0 points</h1><p>Your submission could not be graded:</p>"
        "<ul><li>dora_lab.ipynb is not a valid notebook (&lt;binary&gt;)</li></ul></body></html>"
    )


def test_publish_feedback_copies_nbgraders_pages_and_writes_the_others(tmp_path):
    Ledger(tmp_path / STATUS_FILE, {"ana": LedgerEntry([], "k"), "ben": LedgerEntry(["no notebook"], "k")}).write()
    page = tmp_path / "course" / "feedback" / "ana" / "dora" / "dora_lab.html"
    page.parent.mkdir(parents=True)
    page.write_text("<p>nbgrader's feedback for ana</p>")
    stale = tmp_path / "feedback" / "gone" / "dora_lab.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("a student of an earlier class")

    publish_feedback(tmp_path)

    assert sorted(path.name for path in (tmp_path / "feedback").iterdir()) == ["ana", "ben"]
    assert (tmp_path / "feedback" / "ana" / "dora_lab.html").read_text() == "<p>nbgrader's feedback for ana</p>"
    assert (tmp_path / "feedback" / "ben" / "dora_lab.html").read_text() == not_graded_page(["no notebook"])


def test_notices_open_the_notebook_once_warnings_first_and_replace_the_ones_before(tmp_path):
    path = tmp_path / "autograded.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Exercise 1")]), path)
    add_notices(path, info=["first <run>"])
    add_notices(path, info=["not run again"], warnings=["graded without a sandbox (--no-sandbox): second"])
    cells = nbformat.read(path, as_version=4).cells
    assert [bool(cell.metadata.get(NOTICE_CELL)) for cell in cells] == [True, False]
    source = cells[0].source
    assert source.index("without a sandbox") < source.index("not run again") and "first" not in source
    assert "#cf222e" in source.splitlines()[0] and "#cf222e" not in source.splitlines()[1]
    add_notices(path)  # a regrade with nothing to say leaves no notice behind
    assert not any(cell.metadata.get(NOTICE_CELL) for cell in nbformat.read(path, as_version=4).cells)


def test_feedback_pages_leave_out_the_hidden_tests_of_test_cells_only():
    """The instructor's test cells lose their hidden region; a student's cell keeps whatever it holds."""
    from nbformat.v4 import new_code_cell, new_notebook

    from labhelpers.grading.feedback import ClearHiddenTestsOfTestCells

    test = new_code_cell(
        '"""visible check"""\ncheck(f)\n### BEGIN HIDDEN TESTS\ncheck(f, seeds=[7])\n### END HIDDEN TESTS',
        metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}},
    )
    answer = new_code_cell(
        "def f():\n    ### BEGIN HIDDEN TESTS  (a stray marker a student typed)\n    return 1",
        metadata={"nbgrader": {"grade": False, "solution": True, "grade_id": "a"}},
    )
    notebook, _ = ClearHiddenTestsOfTestCells().preprocess(new_notebook(cells=[answer, test]), {})
    assert notebook.cells[1].source == '"""visible check"""\ncheck(f)'
    assert "BEGIN HIDDEN TESTS" in notebook.cells[0].source


def test_the_graded_copy_generates_feedback_without_hidden_tests():
    from labhelpers.grading.course import FEEDBACK_PREPROCESSORS, course_config

    config = course_config()
    assert config.GenerateFeedback.preprocessors == FEEDBACK_PREPROCESSORS
    assert FEEDBACK_PREPROCESSORS[-1] == "labhelpers.grading.feedback.ClearHiddenTestsOfTestCells"
