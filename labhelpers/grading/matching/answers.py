"""Find each answer's parts among the submitted cells that are not instructor cells.

An answer is found by its grade_id, else by the functions and classes its stub defines (``def decompose_weight``,
``class DoRALinear``) or, in place, by the stub's first line; a written answer by position, as the markdown between
its question and the next instructor cell. A cell right after an answer's part continues it when it cannot stand alone
(a split's later parts lose their metadata in VS Code and Colab): code that is indented or parses only joined to the
part above, or any markdown after a written answer.
"""

from __future__ import annotations

from labhelpers.grading.matching.release import ReleaseCell
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.submission import SubmittedPart
from labhelpers.grading.matching.text import defined_names, first_line, parses


def find_answers(matching: Matching) -> dict[int, list[int]]:
    """Find each answer's parts: by grade_id, by the stub's definitions or first line, as a continuation, by position.

    Notes the answers found by content although the notebook has nbgrader metadata.

    Returns:
        {release index of the answer: positions of its parts, in the student's order}.
    """
    answers = {cell.grade_id: cell for cell in matching.release if cell.answer}
    free = matching.free()
    owner, by_content = _by_id_or_content(matching, answers, free)
    _continuations(matching, owner, set(free))
    _written_by_position(matching, answers, free, owner, by_content)
    if matching.with_metadata:
        parts = matching.parts
        matching.notes.add_names(
            "content",
            "answer {} found by content (nbgrader metadata missing)",
            "answers found by content (nbgrader metadata missing): {}",
            [
                cell.grade_id
                for cell in matching.release
                if any(owner[p] is cell and not parts[p].from_merge for p in by_content)
            ],
        )
    found: dict[int, list[int]] = {}
    for position in sorted(owner):
        found.setdefault(owner[position].index, []).append(position)
    return found


def _by_id_or_content(
    matching: Matching, answers: dict[str, ReleaseCell], free: list[int]
) -> tuple[dict[int, ReleaseCell], set[int]]:
    """Give free parts to answers by grade_id, else by the stub's definitions, else in place by its first line.

    Returns:
        ({part position: its answer}, the positions found by content rather than grade_id).
    """
    first_lines: dict[str, list[ReleaseCell]] = {}
    for cell in answers.values():
        first_lines.setdefault(cell.first_line, []).append(cell)
    owner: dict[int, ReleaseCell] = {}
    by_content = set()
    for position in free:
        part = matching.parts[position]
        if part.grade_id in answers:
            owner[position] = answers[part.grade_id]
            continue
        if part.grade_id is not None:
            continue  # an instructor cell's metadata on a cell that is not that cell: an edited copy, kept as is
        names = defined_names(part.source) if part.cell_type == "code" else set()
        matches = [cell for cell in answers.values() if cell.names & names]
        same_start = first_lines.get(first_line(part.norm), []) if part.norm else []
        if matches:
            owner[position] = max(matches, key=lambda cell: (len(cell.names & names), -cell.index))
        elif (
            len(same_start) == 1
            and part.cell_type == same_start[0].cell_type
            and matching.between(position, same_start[0].index)
        ):
            owner[position] = same_start[0]
        if position in owner:
            by_content.add(position)
    return owner, by_content


def _continuations(matching: Matching, owner: dict[int, ReleaseCell], free: set[int]) -> None:
    """Give each part that continues the answer part right above it to that answer.

    A split's later parts lose the grade_id in VS Code and Colab; they follow their first part.
    """
    previous, so_far = None, {}  # the last part owned by an answer; each answer's text up to here
    for position, part in enumerate(matching.parts):
        if position not in free:
            previous = None
        elif part.source.strip():
            after_part = position not in owner and part.grade_id is None and previous is not None
            if after_part and continues(owner[previous], so_far[owner[previous].index], part):
                owner[position] = owner[previous]
            if position in owner:
                index = owner[position].index
                so_far[index] = so_far[index] + "\n" + part.source if index in so_far else part.source
            previous = position if position in owner else None


def _written_by_position(
    matching: Matching,
    answers: dict[str, ReleaseCell],
    free: list[int],
    owner: dict[int, ReleaseCell],
    by_content: set[int],
) -> None:
    """Give a written answer with no part of its own the markdown between its question and the next instructor cell."""
    found = {cell.index for cell in owner.values()}
    for cell in answers.values():
        if cell.index in found or cell.cell_type != "markdown":
            continue
        for position in free:
            part = matching.parts[position]
            if position in owner or part.grade_id is not None or part.cell_type != "markdown" or not part.norm:
                continue
            before, after = matching.regions[position]
            if [other for other in answers.values() if before < other.index < after] == [cell]:
                owner[position] = cell
                by_content.add(position)


def continues(cell: ReleaseCell, so_far: str, part: SubmittedPart) -> bool:
    """Say whether `part` is the next piece of a split answer whose text up to it is `so_far`.

    Code continues the answer when it cannot stand alone (an indented first line, or a syntax error) and makes valid
    code joined to it; so a scratch cell that stands alone, or would break the answer, stays a cell of its own.
    """
    if cell.cell_type == "markdown":
        return part.cell_type == "markdown"
    if part.cell_type != "code" or defined_names(part.source) & cell.names:
        return False
    first = next((line for line in part.source.split("\n") if line.strip()), "")
    alone = first[:1] not in (" ", "\t") and parses(part.source)
    return not alone and parses(so_far + "\n" + part.source)
