"""The submitted notebook's cells, read tolerantly: whatever an editor or a broken file left becomes a part or a count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from labhelpers.grading.matching.attachments import read_attachments
from labhelpers.grading.matching.text import normalise, source_text


@dataclass
class SubmittedPart:
    """One submitted cell, or one piece of a merged cell cut around an instructor cell.

    Attributes:
        cell_type: code, markdown or raw (any other type reads as raw).
        source: its source as one string.
        norm: the normalised source.
        grade_id: its nbgrader grade_id when that is one of the release's, else None.
        cell_id: its cell id when it is a string, else None.
        from_merge: a piece cut out of a merged cell.
        attachments: a markdown or raw cell's attachments (pasted images), {name: {mime type: base64 data}}.
        claim: (grade_id, points) as its nbgrader metadata states them when that says ``grade: true``, else None.
    """

    cell_type: str
    source: str
    norm: str
    grade_id: str | None
    cell_id: str | None
    from_merge: bool = False
    attachments: dict[str, dict[str, str]] = field(default_factory=dict)
    claim: tuple[object, object] | None = None


def read_parts(submitted: object, release_ids: set[str]) -> tuple[list[SubmittedPart], int]:
    """Read the submitted cells tolerantly.

    Args:
        submitted: the notebook as nbformat read it, or any object.
        release_ids: the release's grade_ids (any other grade_id is ignored).

    Returns:
        (the submitted parts in notebook order, how many entries of ``cells`` were not cells at all).
    """
    cells = submitted.get("cells") if isinstance(submitted, Mapping) else None
    if not isinstance(cells, list):
        return [], 0
    parts, unreadable = [], 0
    for cell in cells:
        if not isinstance(cell, Mapping):
            unreadable += 1
            continue
        metadata = cell.get("metadata")
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
        grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, Mapping) else None
        cell_type, cell_id = cell.get("cell_type"), cell.get("id")
        cell_type = cell_type if cell_type in ("code", "markdown", "raw") else "raw"
        source = source_text(cell.get("source"))
        parts.append(
            SubmittedPart(
                cell_type=cell_type,
                source=source,
                norm=normalise(source),
                grade_id=grade_id if isinstance(grade_id, str) and grade_id in release_ids else None,
                cell_id=cell_id if isinstance(cell_id, str) else None,
                attachments=read_attachments(cell.get("attachments")) if cell_type != "code" else {},
                claim=(grade_id, nbgrader.get("points"))
                if isinstance(nbgrader, Mapping) and nbgrader.get("grade")
                else None,
            )
        )
    return parts, unreadable
