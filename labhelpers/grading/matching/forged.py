"""Grade cells the release does not have: nbgrader metadata a student wrote, named for a person to look at.

nbgrader scores every cell whose metadata says ``grade: true``, with the points written there. The rebuilt notebook
takes each graded cell's metadata from the release, so a cell that claims points the release does not give (a grade_id
of its own, or other points under one of the release's) never reaches nbgrader: it stays as a plain cell, or becomes
the release's cell. Editors copy metadata, they never invent it, so such a claim is named in the status for a look.
"""

from __future__ import annotations

from labhelpers.grading.matching.state import Matching

_SHOWN = 64  # characters of a forged grade_id the status shows


def find_forged(matching: Matching) -> None:
    """Name, for review, each submitted cell whose nbgrader metadata claims points the release does not give."""
    released = {cell.grade_id: cell.points for cell in matching.release}
    said = []
    for part in matching.parts:
        if part.claim is None:
            continue
        grade_id, claimed = part.claim
        known = isinstance(grade_id, str) and grade_id in released
        points = released.get(grade_id) if known else None
        if points is not None and (claimed is None or _number(claimed) == points):
            continue  # the release's own grade cell (or a copy of it): its metadata is the release's anyway
        name = str(grade_id)[:_SHOWN]
        what = f"{_number(claimed):g} points" if _number(claimed) is not None else "no valid points"
        if known:
            what += f", the release gives {points:g}" if points is not None else ", a cell the release does not grade"
        sentence = f"removed forged grade cell {name} ({what}): please review"
        if sentence not in said:
            said.append(sentence)
    matching.review += said


def _number(value: object) -> float | None:
    """Return points as a number (None for anything nbgrader could not read as points)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None
