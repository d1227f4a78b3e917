"""What the student reads: the judge's verdict under each test cell, and no trace of the grading machine.

The autograded notebook is the tidied submission, without outputs unless grading ran it (grade --run-notebooks).
Before nbgrader turns it into feedback HTML, each test cell gets the judge's verdict (the score is the judge's), saying
so when the notebook's own run of that cell disagreed, and every output is cleaned of the grader's paths (its Python,
project, data and scratch folders). A submission nbgrader could not record, or could not grade at all, gets a plain
page instead, from one template.
"""

from __future__ import annotations

import html
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from string import Template

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.judging import Verdict
from labhelpers.grading.ledger import Ledger
from labhelpers.grading.untrusted import make_inert

NOT_RUN_NOTICE = (
    "The grader tested your definitions (the imports, functions and classes of your answer cells, loaded in order in "
    "a sandbox) on inputs of its own; it did not run your notebook again, so this page shows your code and answers "
    "without outputs. Under each test is the grader's verdict: it is your score."
)
"""What the feedback page of a notebook graded without running it says first."""
VERDICT_OUTPUT = "dora-lab-verdict"
"""Metadata key marking the verdict output added to a test cell."""
PAGE = Template(
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>$title</title></head><body>$body</body></html>"
)
"""The plain feedback page: a title and a body of HTML (every text in it escaped by the caller)."""


def notebook_passed(cell: nbformat.NotebookNode) -> bool:
    """Tell whether the notebook's own run passed a test cell: nbgrader's rule, no error output."""
    return not any(output.get("output_type") == "error" for output in cell.get("outputs", []))


def verdict_output(verdict: Verdict, points: float, notebook_passed: bool | None) -> nbformat.NotebookNode:
    """Return the display output that shows the judge's verdict on a test cell (notebook_passed: None when the
    notebook was not run)."""
    score = points if verdict.passed else 0
    head = f"Grader: {'passed' if verdict.passed else 'failed'} ({score:g} / {points:g} points)"
    note = ""
    if notebook_passed is not None and notebook_passed != verdict.passed:
        note = (
            "Your notebook's own run of this cell passed, but the grader's check of your definitions on new inputs "
            "failed; the grader's verdict counts."
            if notebook_passed
            else "Your notebook's own run of this cell failed (see above), but the grader's check of your definitions "
            "passed; the grader's verdict counts."
        )
    text = "\n".join(part for part in (head, verdict.message, note) if part)
    colour = "#1a7f37" if verdict.passed else "#cf222e"
    body = (
        f"<div style='border-left: 4px solid {colour}; padding: 4px 10px; margin: 4px 0'>"
        f"<b style='color: {colour}'>{html.escape(head)}</b><br>{html.escape(verdict.message)}"
        + (f"<br><i>{html.escape(note)}</i>" if note else "")
        + "</div>"
    )
    return nbformat.v4.new_output(
        "display_data", data={"text/plain": text, "text/html": body}, metadata={VERDICT_OUTPUT: True}
    )


def grader_paths(extra: Iterable[str | os.PathLike] = ()) -> dict[str, str]:
    """Return {path on the grading machine: what the student sees instead}, longest first."""
    places = {
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        os.path.realpath(sys.prefix): "<python>",
        os.path.realpath(sys.base_prefix): "<python>",
        str(PROJECT_ROOT): "<lab>",
        os.path.expanduser("~"): "~",
        **{str(path): "<grader>" for path in extra},
    }
    places = {path: shown for path, shown in places.items() if path and path not in ("/", ".")}
    return dict(sorted(places.items(), key=lambda item: -len(item[0])))


def redact(text: str, paths: Mapping[str, str]) -> str:
    """Replace every grading-machine path in text."""
    for path, shown in paths.items():
        text = text.replace(path, shown)
    return text


def _redact_output(output: nbformat.NotebookNode, paths: Mapping[str, str]) -> None:
    if "text" in output:
        output["text"] = redact(output["text"], paths)
    if "traceback" in output:
        output["traceback"] = [redact(line, paths) for line in output["traceback"]]
    if "evalue" in output:
        output["evalue"] = redact(output["evalue"], paths)
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            if isinstance(value, str):
                output["data"][mime] = redact(value, paths)
            elif isinstance(value, list):
                output["data"][mime] = [redact(v, paths) if isinstance(v, str) else v for v in value]


def annotate(
    path: Path, verdicts: Mapping[str, Verdict], points: Mapping[str, float], paths: Mapping[str, str], ran: bool
) -> list[str]:
    """Add each test cell's verdict to the autograded notebook at path, clean every output; return disagreements.

    Every output, and every Markdown cell the student wrote, is made inert first (labhelpers.grading.untrusted): the
    formgrader and the feedback page both render this notebook.

    Args:
        path: the autograded notebook (rewritten in place).
        verdicts: {grade_id: the judge's verdict}.
        points: {grade_id: the test cell's points}.
        paths: from grader_paths().
        ran: whether grading ran the notebook (its test cells' outputs are then the notebook's own verdicts).

    Returns:
        The grade_ids whose verdict differs from the notebook's own run (none when it was not run).
    """
    notebook = nbformat.read(path, as_version=4)
    disagreed = []
    for cell in notebook.cells:
        make_inert(cell, trusted_output=VERDICT_OUTPUT)
        for output in cell.get("outputs", []):
            _redact_output(output, paths)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in verdicts and cell.cell_type == "code":
            own = notebook_passed(cell) if ran else None
            if own is not None and own != verdicts[grade_id].passed:
                disagreed.append(grade_id)
            cell.outputs = [o for o in cell.outputs if not o.get("metadata", {}).get(VERDICT_OUTPUT)]
            cell.outputs.append(verdict_output(verdicts[grade_id], points[grade_id], own))
    nbformat.write(notebook, path)
    return disagreed


class ClearHiddenTestsOfTestCells(ClearHiddenTests):
    """nbgrader's ClearHiddenTests, on the instructor's test cells only: feedback pages show no hidden test.

    nbgrader's feedback keeps the hidden tests of every test cell (jupyter/nbgrader#917), so a returned page would
    hand them to the class. The test cells of a graded notebook are the instructor's (restored from the release),
    with well-formed markers; a student's own cell is never touched, so a stray marker typed there cannot stop the
    page from being written.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            self._remove_hidden_test_region(cell)
        return cell, resources


NOTICE_CELL = "dora-lab-notice"
"""Metadata key marking the notice cell added at the top of the autograded notebook."""


def add_notices(path: Path, *, info: Sequence[str] = (), warnings: Sequence[str] = ()) -> None:
    """Open the notebook at path with one cell of notices, replacing the notices of an earlier grading.

    Args:
        path: the autograded notebook (rewritten in place); its feedback page then opens with the notices.
        info: what a reader should know first (e.g. that the page shows no outputs), each in a grey box.
        warnings: what every reader must see first (e.g. that the submission was graded without a sandbox), each
            in a red box, above the rest.
    """
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if not cell.metadata.get(NOTICE_CELL)]
    boxes = [(text, "#cf222e") for text in warnings] + [(text, "#8c959f") for text in info]
    if boxes:
        cell = nbformat.v4.new_markdown_cell(
            "\n".join(
                f"<div style='border: 2px solid {colour}; padding: 6px 10px; margin: 4px 0'><b>{html.escape(text)}</b>"
                "</div>"
                for text, colour in boxes
            )
        )
        cell.metadata[NOTICE_CELL] = True
        notebook.cells.insert(0, cell)
    nbformat.write(notebook, path)


def plain_page(
    student_id: str, verdicts: Mapping[str, Verdict], points: Mapping[str, float], status: list[str]
) -> str:
    """Return a feedback page of the verdicts alone, for a submission nbgrader could not run as a notebook.

    Args:
        student_id: named in the heading.
        verdicts: {grade_id: the judge's verdict}, in the notebook's order.
        points: {grade_id: the test cell's points}.
        status: what was unusual, one line each.

    Returns:
        The HTML page.
    """
    rows = "".join(
        f"<tr><td>{html.escape(grade_id)}</td><td>{points[grade_id] if v.passed else 0:g} / {points[grade_id]:g}</td>"
        f"<td>{html.escape(v.message)}</td></tr>"
        for grade_id, v in verdicts.items()
    )
    body = (
        f"<h1>Feedback for {html.escape(student_id)}</h1>{_items(status)}"
        f"<table border='1' cellpadding='4'><tr><th>test</th><th>points</th><th>grader's verdict</th></tr>{rows}</table>"
    )
    return PAGE.substitute(title="feedback", body=body)


def not_graded_page(status: list[str]) -> str:
    """Return the feedback page of a submission that could not be graded at all (no valid notebook): 0 points, why."""
    body = f"<h1>{NOTEBOOK}: 0 points</h1><p>Your submission could not be graded:</p>{_items(status)}"
    return PAGE.substitute(title=f"{NOTEBOOK} feedback", body=body)


def _items(lines: list[str]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<ul>{items}</ul>"


def publish_feedback(out_dir: Path) -> None:
    """Copy nbgrader's feedback to OUT_DIR/feedback/<student_id>/dora_lab.html (a short page when there is none)."""
    course = out_dir / "course"
    ledger = Ledger.read(out_dir)
    target_root = out_dir / "feedback"
    shutil.rmtree(target_root, ignore_errors=True)
    for student_id in sorted(ledger.entries):
        target = target_root / student_id / f"{NOTEBOOK}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = course / "feedback" / student_id / ASSIGNMENT / f"{NOTEBOOK}.html"
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            target.write_text(not_graded_page(ledger.status(student_id)))
