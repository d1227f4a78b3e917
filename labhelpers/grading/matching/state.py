"""One submission being matched to the release: what each step of `tidy` has found so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import nbformat

from labhelpers.grading.matching.notes import Notes
from labhelpers.grading.matching.release import ReleaseCell, read_release
from labhelpers.grading.matching.submission import SubmittedPart, read_parts


@dataclass
class Matching:
    """The release, the submitted parts and what the steps found, built once per `tidy` call.

    The steps fill it in order: cut merged cells (`parts`), anchor the instructor cells (`chain`, `dropped`, `moved`,
    `regions`), find and choose the answers (`answers`, `missing`, `placed`), then build the notebook.

    Attributes:
        release_notebook: the release as nbgrader generated it.
        release: its cells, in order.
        parts: the submitted cells in order (merged cells cut into pieces once `cut_merged` ran).
        notes: what was repaired.
        with_metadata: some part carries a release grade_id (else the notebook is matched by content alone).
        unreadable: how many entries of the submitted ``cells`` were not cells.
        chain: {part position: release index} of the instructor cells anchored in order.
        dropped: positions of the parts left out (copies of instructor cells or of answers).
        moved: release indices of the instructor cells found out of order and put back.
        regions: for each part, the release indices of the anchored instructor cells just above and just below it.
        answers: {answer grade_id: the student's answer}, the release's stub for a missing answer.
        missing: grade_ids of the answers not found.
        placed: {part position: release index of the cell it became}.
        attachments: {written answer's grade_id: the attachments (pasted images) of its parts, pooled}.
        review: what a person should look at (forged grade cells), one short sentence each.
    """

    release_notebook: nbformat.NotebookNode
    release: list[ReleaseCell]
    parts: list[SubmittedPart]
    notes: Notes
    with_metadata: bool
    unreadable: int = 0
    chain: dict[int, int] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    moved: set[int] = field(default_factory=set)
    regions: list[tuple[int, int]] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    placed: dict[int, int] = field(default_factory=dict)
    attachments: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    review: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, submitted: object, release: nbformat.NotebookNode) -> Matching:
        """Read the release and the submitted cells; note the entries that are not cells.

        Raises:
            LabGradingError: a release cell has no grade_id.
        """
        cells = read_release(release)
        notes = Notes()
        parts, unreadable = read_parts(submitted, {cell.grade_id for cell in cells})
        if unreadable:
            notes.add("unreadable", f"{unreadable} unreadable cell{'s' if unreadable > 1 else ''} skipped")
        with_metadata = any(part.grade_id for part in parts)
        return cls(release, cells, parts, notes, with_metadata, unreadable)

    def free(self) -> list[int]:
        """Return the positions of the parts that are neither anchored instructor cells nor dropped."""
        return [
            position
            for position in range(len(self.parts))
            if position not in self.chain and position not in self.dropped
        ]

    def between(self, position: int, index: int) -> bool:
        """Say whether release cell `index` lies between the instructor cells anchored around part `position`."""
        before, after = self.regions[position]
        return before < index < after
