"""Sample submissions made from the release: the instructor's solutions in the answer cells, or chosen answers.

`dora-lab sample-class` uses them to try the whole pipeline before real submissions arrive; the grading tests
build their classes with them, so every sample follows the current release.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

_SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def solution_sources(source: nbformat.NotebookNode) -> dict[str, str]:
    """Return {grade_id: source} of the instructor's answer cells, solution markers removed."""
    answers = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers[meta["grade_id"]] = _SOLUTION_MARKERS.sub("", cell.source)
    return answers


def answered(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """Return a copy of the student release with the given answer cells filled in.

    Args:
        release: the student notebook nbgrader generated.
        answers: {grade_id: new source} for answer cells; the others keep their stubs.

    Returns:
        The filled notebook (the release is not modified).
    """
    notebook = copy.deepcopy(release)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def perfect(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the release answered with the instructor's solutions."""
    return answered(release, solution_sources(source))


def write_submission(
    folder: Path, student_id: str, notebook: nbformat.NotebookNode, name: str = "dora_lab.ipynb"
) -> Path:
    """Write `notebook` as SUBMISSIONS/<student_id>/<name> and return its path."""
    path = folder / student_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def answers_of_exercises(source: nbformat.NotebookNode, numbers: set[int]) -> dict[str, str]:
    """Return the instructor's answers ({grade_id: source}) of the code answer cells in the given exercises only."""
    from labhelpers.grading.course import sections

    solutions, answers = solution_sources(source), {}
    for exercise, cell in sections(source):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if exercise in numbers and cell.cell_type == "code" and grade_id in solutions:
            answers[grade_id] = solutions[grade_id]
    return answers
