"""Anchor the instructor cells: the submitted parts that are the release's locked text, tests and read-only code.

A part is an instructor cell by grade_id or by its normalised source. Of all such matches the best order-preserving set
is kept (a weighted longest increasing subsequence); exact copies elsewhere are pasted duplicates, or the cell moved out
of order, and are dropped. The anchored cells cut the notebook into regions in which the answers are looked for.
"""

from __future__ import annotations

from labhelpers.grading.matching.release import ReleaseCell
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.submission import SubmittedPart

_NO_PAIR = (0, 0, -1)  # (total score, -part position, pair): the Fenwick tree's empty entry


def anchor(matching: Matching) -> None:
    """Anchor the instructor cells in order, drop their copies (noting them) and mark each part's region."""
    matching.chain = anchor_chain(matching.parts, matching.release)
    _drop_instructor_copies(matching)
    matching.regions = _regions(len(matching.parts), matching.chain, len(matching.release))


def anchor_chain(parts: list[SubmittedPart], release: list[ReleaseCell]) -> dict[int, int]:
    """Match submitted parts to instructor cells, keeping the best order-preserving set of matches.

    A part matches an instructor cell by grade_id or by normalised source. A match scores 8, plus 2 for the same
    grade_id, 1 for the same source and 1 for the release's cell id (the original rather than a pasted copy), so the
    most matches win first. The chain with the highest total whose parts and release cells both increase is kept (a
    weighted longest increasing subsequence, O(n log n) with a Fenwick tree of prefix maxima), ties going to the
    earlier part.

    Returns:
        {part position: release index} of the chosen instructor cells.
    """
    pairs = _candidate_pairs(parts, release)
    size = len(release)
    tree = [_NO_PAIR] * (size + 1)  # Fenwick tree of (total, -part position, pair) maxima over release indices

    def best_below(index: int) -> tuple[int, int, int]:
        best = _NO_PAIR
        while index > 0:
            best = max(best, tree[index])
            index -= index & -index
        return best

    back, first = [-1] * len(pairs), 0
    while first < len(pairs):
        last = first
        while last < len(pairs) and pairs[last][0] == pairs[first][0]:
            last += 1
        # One part can match one instructor cell only: score all of its candidates before storing any.
        scored = []
        for pair in range(first, last):
            total, _, back[pair] = best_below(pairs[pair][1])
            scored.append((pair, total + pairs[pair][2]))
        for pair, total in scored:
            index = pairs[pair][1] + 1
            while index <= size:
                tree[index] = max(tree[index], (total, -pairs[pair][0], pair))
                index += index & -index
        first = last
    chain, pair = {}, best_below(size)[2]
    while pair >= 0:
        chain[pairs[pair][0]] = pairs[pair][1]
        pair = back[pair]
    return chain


def _candidate_pairs(parts: list[SubmittedPart], release: list[ReleaseCell]) -> list[tuple[int, int, int]]:
    """Return every (part position, release index, score) of a part that could be an instructor cell, in part order."""
    by_norm: dict[str, list[ReleaseCell]] = {}
    by_id = {}
    for cell in release:
        if not cell.answer:
            by_norm.setdefault(cell.norm, []).append(cell)
            by_id[cell.grade_id] = cell
    pairs = []
    for position, part in enumerate(parts):
        candidates = {by_id[part.grade_id].index} if part.grade_id in by_id else set()
        candidates |= {cell.index for cell in by_norm.get(part.norm, [])} if part.norm else set()
        for index in sorted(candidates):
            cell = release[index]
            score = 8 + 2 * (part.grade_id == cell.grade_id) + (part.norm == cell.norm)
            score += part.cell_id is not None and part.cell_id == cell.cell.get("id")
            pairs.append((position, index, score))
    return pairs


def _drop_instructor_copies(matching: Matching) -> None:
    """Drop exact copies of instructor cells: pasted duplicates, or a cell moved out of order (put back)."""
    release, chain = matching.release, matching.chain
    by_norm = {cell.norm: cell for cell in release if not cell.answer and cell.norm}
    matched = set(chain.values())
    duplicates = []
    for position, part in enumerate(matching.parts):
        cell = by_norm.get(part.norm)
        if position in chain or cell is None or part.grade_id not in (None, cell.grade_id):
            continue
        matching.dropped.add(position)
        if cell.index in matched:
            duplicates.append(cell)
        else:
            matching.moved.add(cell.index)
            matched.add(cell.index)
    for cell in duplicates:
        matching.notes.duplicate(cell)
    matching.notes.add_names(
        "moved",
        "instructor cell {} moved back into place",
        "instructor cells moved back into place: {}",
        [release[index].grade_id for index in sorted(matching.moved)],
    )


def _regions(count: int, chain: dict[int, int], size: int) -> list[tuple[int, int]]:
    """Return, for each part, the release indices of the instructor cells matched just above and just below it."""
    above, found = -1, []
    for position in range(count):
        found.append((above, size))
        above = chain.get(position, above)
    below = size
    for position in range(count - 1, -1, -1):
        found[position] = (found[position][0], below)
        below = chain.get(position, below)
    return found


def note_instructor_cells(matching: Matching) -> None:
    """Note the instructor cells that were edited (restored), deleted (put back) or changed type."""
    matched = {index: position for position, index in matching.chain.items()}
    edited, deleted, retyped = [], [], []
    for cell in matching.release:
        if cell.answer or cell.index in matching.moved:
            continue
        position = matched.get(cell.index)
        if position is None:
            deleted.append(cell)
        elif matching.parts[position].norm != cell.norm:
            edited.append(cell)
        elif matching.parts[position].cell_type != cell.cell_type:
            retyped.append(cell)
    for kind, cells in (("edited", edited), ("deleted", deleted)):
        word = "test" if all(cell.test for cell in cells) else "instructor"
        matching.notes.add_names(
            kind,
            f"{kind} {word} cell {{}} restored",
            f"{kind} {word} cells restored: {{}}",
            [cell.grade_id for cell in cells],
        )
    matching.notes.add_names(
        "types", "cell type restored: {}", "cell types restored: {}", [cell.grade_id for cell in retyped]
    )
