"""Write the tidied notebook: the release with the answers in it, the cells the student added between its cells."""

from __future__ import annotations

import copy
import re

import nbformat

from labhelpers.grading.matching.attachments import completed
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.submission import SubmittedPart

# nbformat 4.5 cell ids: 1 to 64 letters, digits, '-' or '_'.
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def build(matching: Matching) -> tuple[nbformat.NotebookNode, list[str]]:
    """Write the release with the answers in it, each added cell after the last release cell above it.

    Returns:
        (the notebook, nbformat 4.5 without outputs; the sources of the added code cells, in notebook order).
    """
    release = matching.release_notebook
    notebook = nbformat.v4.new_notebook(metadata=copy.deepcopy(dict(release.get("metadata", {}))))
    ids = _NewIds({cell.get("id") for cell in release.cells})
    after = added_after(matching)
    added_code: list[str] = []
    for index in range(-1, len(matching.release)):
        if index >= 0:
            notebook.cells.append(_release_cell(matching, index))
        for position in after.get(index, []):
            part = matching.parts[position]
            notebook.cells.append(_added_cell(matching, part, ids.new(part.cell_id)))
            if part.cell_type == "code":
                added_code.append(part.source)
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook, added_code


def added_after(matching: Matching) -> dict[int, list[int]]:
    """Return {release index: positions of the added parts that follow it} (-1: above the first release cell).

    An added part is one that became no release cell, was not dropped, and is not blank.
    """
    after: dict[int, list[int]] = {}
    above = -1
    for position, part in enumerate(matching.parts):
        above = max(above, matching.placed.get(position, -1))
        if position not in matching.placed and position not in matching.dropped and part.source.strip():
            after.setdefault(above, []).append(position)
    return after


def _release_cell(matching: Matching, index: int) -> nbformat.NotebookNode:
    """Return release cell `index` as graded: the student's answer in an answer cell, no outputs, a valid id."""
    released = matching.release[index]
    cell = copy.deepcopy(released.cell)
    if released.answer:
        cell.source = matching.answers[released.grade_id]
        if cell.cell_type != "code":
            _attach(matching, cell, matching.attachments.get(released.grade_id, {}), f"answer {released.grade_id}")
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    if not isinstance(cell.get("id"), str) or not _CELL_ID.match(cell["id"]):
        cell["id"] = f"release-{index}"
    return cell


def _added_cell(matching: Matching, part: SubmittedPart, cell_id: str) -> nbformat.NotebookNode:
    """Return a cell the student added, without nbgrader metadata or outputs (a markdown cell with its images)."""
    cell = {"id": cell_id, "cell_type": part.cell_type, "metadata": {}, "source": part.source}
    if part.cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    else:
        _attach(matching, cell, part.attachments, "an added cell")
    # Built as plain JSON: nbformat.v4.new_*_cell validates each cell, 3 ms apiece.
    return nbformat.from_dict(cell)


def _attach(matching: Matching, cell: dict, attachments: dict[str, dict[str, str]], what: str) -> None:
    """Give a markdown or raw cell the images its text shows (one saying so for each it lacks); note those it lacked."""
    cell.pop("attachments", None)
    attachments, missing = completed(cell["source"], attachments)
    if attachments:
        cell["attachments"] = attachments
    if missing:
        matching.notes.add("images", f"image {', '.join(missing)} missing from {what}, marked in its place")


class _NewIds:
    """Cell ids for the added cells: their own when valid and unused, else ``added-N``."""

    def __init__(self, used: set) -> None:
        self._used = used
        self._counter = 0

    def new(self, wanted: str | None) -> str:
        """Return `wanted` if it is a valid cell id no other cell has, else the next free ``added-N``."""
        cell_id = wanted if wanted and _CELL_ID.match(wanted) else None
        while cell_id is None or cell_id in self._used:
            self._counter += 1
            cell_id = f"added-{self._counter}"
        self._used.add(cell_id)
        return cell_id
