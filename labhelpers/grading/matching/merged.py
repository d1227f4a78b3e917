"""Cut instructor cells back out of merged cells (JupyterLab's and Notebook's merge, VS Code's join).

A merge leaves the instructor cell's lines whole inside the merged cell, next to the answer, and deletes the instructor
cell (JupyterLab deletes locked and undeletable cells all the same, jupyterlab#11140). The text around them keeps the
merged cell's grade_id when that was an answer's, so the answer is still found by it.
"""

from __future__ import annotations

from labhelpers.grading.matching.release import ReleaseCell
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.submission import SubmittedPart
from labhelpers.grading.matching.text import normalise


def cut_merged(matching: Matching) -> None:
    """Cut instructor cells out of merged cells, when they are nowhere as a cell of their own; note which."""
    instructor = [cell for cell in matching.release if not cell.answer]
    instructor_ids = {cell.grade_id for cell in instructor}
    parts = matching.parts
    present = {part.norm for part in parts}
    separated = []
    # Longest first: a short instructor cell could be a few lines of a longer one.
    for cell in sorted(instructor, key=lambda cell: (-len(cell.norm), cell.index)):
        if not cell.norm or cell.norm in present:
            continue
        block = cell.norm.split("\n")
        for position, part in enumerate(parts):
            lines = part.norm.split("\n")
            start = _find_block(lines, block)
            if start < 0 or len(lines) == len(block):
                continue
            pieces = _cut(part, start, cell, part.grade_id if part.grade_id not in instructor_ids else None)
            present.update(piece.norm for piece in pieces)
            parts = parts[:position] + pieces + parts[position + 1 :]
            separated.append(cell)
            break
    matching.parts = parts
    separated.sort(key=lambda cell: cell.index)
    matching.notes.add_names(
        "merged",
        "test cell {} separated from a merged cell",
        "test cells separated from merged cells: {}",
        [cell.grade_id for cell in separated if cell.test],
    )
    matching.notes.add_names(
        "merged",
        "instructor cell {} separated from a merged cell",
        "instructor cells separated from merged cells: {}",
        [cell.grade_id for cell in separated if not cell.test],
    )


def _cut(part: SubmittedPart, start: int, cell: ReleaseCell, rest_id: str | None) -> list[SubmittedPart]:
    """Cut `part` around the instructor cell `cell`, whose lines start at line `start` of the part.

    Returns:
        the text above, the instructor cell, the text below (empty pieces left out); the text around it has `rest_id`.
    """
    lines = part.norm.split("\n")
    end = start + len(cell.norm.split("\n"))
    pieces = []
    for text, grade_id, cell_type, attachments in (
        (normalise("\n".join(lines[:start])), rest_id, part.cell_type, part.attachments),
        (cell.norm, cell.grade_id, cell.cell_type, {}),
        (normalise("\n".join(lines[end:])), rest_id, part.cell_type, part.attachments),
    ):
        if text:
            pieces.append(SubmittedPart(cell_type, text, text, grade_id, None, True, attachments))
    return pieces


def _find_block(lines: list[str], block: list[str]) -> int:
    """Return where `block` starts as consecutive whole lines of `lines`, or -1."""
    for start in range(len(lines) - len(block) + 1):
        if lines[start] == block[0] and lines[start : start + len(block)] == block:
            return start
    return -1
