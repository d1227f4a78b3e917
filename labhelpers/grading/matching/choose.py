"""Choose which of an answer's parts make the answer, and put it together.

The parts of a split answer are joined in order; an identical copy is dropped; when several cells define the same stub
function, the last one above its test cell is the answer (what the notebook ran) and the others stay as plain cells.
"""

from __future__ import annotations

from labhelpers.grading.matching.attachments import pooled
from labhelpers.grading.matching.release import ReleaseCell
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.text import defined_names


def choose_answers(matching: Matching, found: dict[int, list[int]]) -> None:
    """Set every answer from its parts (or to the release's stub, noted missing) and mark where its parts went.

    Args:
        matching: the matching so far; its answers, missing, placed and dropped are filled in here.
        found: {release index of the answer: positions of its parts, in the student's order}.
    """
    matching.placed = dict(matching.chain)
    for cell in matching.release:
        if not cell.answer:
            continue
        positions = found.get(cell.index, [])
        kept, plain = _choose(matching, cell, positions)
        matching.dropped |= set(positions) - set(kept) - plain
        if kept:
            sources = [matching.parts[position].source for position in kept]
            if cell.cell_type != "code":  # a written answer keeps its parts' pasted images
                sources, images = pooled([(source, matching.parts[p].attachments) for source, p in zip(sources, kept)])
                matching.attachments[cell.grade_id] = images
            matching.answers[cell.grade_id] = ("\n" if cell.cell_type == "code" else "\n\n").join(sources)
            matching.placed.update((position, cell.index) for position in kept)
        else:
            matching.answers[cell.grade_id] = cell.cell.source
            matching.missing.append(cell.grade_id)


def _choose(matching: Matching, cell: ReleaseCell, positions: list[int]) -> tuple[list[int], set[int]]:
    """Choose an answer's parts: drop copies, pick one version of each stub definition; note what was repaired.

    Returns:
        (positions joined into the answer, in order; positions to keep as plain cells instead).
    """
    parts = matching.parts
    positions = [position for position in positions if parts[position].source.strip()] or positions[:1]
    if not positions:
        return [], set()
    # The stub left untouched beside the student's own version of the answer is no version of it (it is dropped).
    positions = [position for position in positions if parts[position].norm != cell.norm] or positions
    chosen = _without_copies(matching, cell, positions)
    plain: set[int] = set()
    if cell.names:
        chosen, plain = _one_version(matching, cell, chosen)
    if len(chosen) > 1:
        matching.notes.add("split", f"answer {cell.grade_id} split over {len(chosen)} cells, joined")
    if not matching.between(chosen[0], cell.index):
        matching.notes.add("moved", f"answer {cell.grade_id} moved back into place")
    if any(parts[position].cell_type != cell.cell_type for position in chosen):
        matching.notes.add("types", f"cell type restored: {cell.grade_id}")
    return chosen, plain


def _without_copies(matching: Matching, cell: ReleaseCell, positions: list[int]) -> list[int]:
    """Keep one of identical copies, the one where the answer belongs if there is one there; note the others.

    Returns:
        the positions kept, in order.
    """
    kept: dict[str, int] = {}
    for position in positions:
        norm, in_place = matching.parts[position].norm, matching.between(position, cell.index)
        if norm not in kept or (in_place and not matching.between(kept[norm], cell.index)):
            kept[norm] = position
    for _ in range(len(positions) - len(kept)):
        matching.notes.duplicate(cell)
    return sorted(kept.values())


def _one_version(matching: Matching, cell: ReleaseCell, chosen: list[int]) -> tuple[list[int], set[int]]:
    """Keep one version of each stub definition: the notebook ran the last one above the test; note the others.

    Returns:
        (the positions kept, in order; the positions of the other versions, kept as plain cells).
    """
    parts = matching.parts
    pieces: list[list[int]] = []  # each version: the part that defines a stub name, then the parts that continue it
    for position in chosen:
        if defined_names(parts[position].source) & cell.names or not pieces:
            pieces.append([position])
        else:
            pieces[-1].append(position)
    test = min((position for position, index in matching.chain.items() if index > cell.index), default=None)
    defining = {
        name: [i for i, piece in enumerate(pieces) if name in defined_names(parts[piece[0]].source)]
        for name in cell.names
    }
    graded = set()
    for found in defining.values():
        above = [i for i in found if test is None or pieces[i][0] < test]
        graded |= {above[-1] if above else found[0]} if found else set()
    versions = sorted({i for found in defining.values() for i in found})
    if len(versions) <= len(graded):
        return chosen, set()
    matching.notes.add(
        "versions",
        f"answer {cell.grade_id} defined in {len(versions)} cells, the last one above its test graded, "
        "the others kept as plain cells",
    )
    plain = {position for i in versions if i not in graded for position in pieces[i]}
    return [position for position in chosen if position not in plain], plain
