"""Match a student's edited notebook to the release, so that nbgrader grades every honest notebook in full.

nbgrader finds answers by the ``grade_id`` in each cell's ``metadata.nbgrader``. Ordinary editing duplicates, splits,
merges or drops that metadata, and nbgrader then fails the whole notebook: ``DeduplicateIds`` keeps the last cell of a
duplicated grade_id and empties the others' nbgrader metadata, which ``CheckCellMetadata`` rejects as an outdated schema
(nbgrader 0.9.6 ``preprocessors/deduplicateids.py``, ``nbgraderformat/common.py``; jupyter/nbgrader#1083, open since
2019; #1941: 15 of 300 notebooks of one course). `tidy` rebuilds the release with the student's answers in it instead.

What editors do to cells (read in their sources and issue trackers):

* JupyterLab 4 (``packages/notebook/src/actions.tsx``). *Copy* puts the cells' JSON on the clipboard without
  ``metadata.deletable`` (``Private.selectedCells``); *paste* inserts it with a new id (only a cut code cell keeps its
  id), so the nbgrader metadata, grade_id included, is duplicated (nbgrader#1083, #1331). *Split* (Ctrl-Shift-minus,
  ``splitCell``) replaces the cell by clones that each carry its full metadata and a new id, every part's leading and
  trailing newlines removed. *Merge* (``mergeCells``) inserts one new cell with the active cell's type and metadata
  (code: ``trusted``), the sources joined by a blank line, and deletes the others, locked and undeletable ones too
  (jupyterlab#11140). *Change type* (``changeCellType``) inserts a new cell (new id) with the same source and metadata.
  *Clear outputs* empties outputs and execution counts only. New cells have metadata ``{}`` (code: ``trusted``).
  ``editable: false`` stops typing and ``deletable: false`` deleting; neither stops copy, split or merge.
* Notebook 6 (``notebook/static/notebook/js/notebook.js``, ``cell.js``). ``copy_cell`` drops ``deletable`` and the id;
  paste keeps the rest of the metadata. ``split_cell`` and ``merge_cells`` refuse cells with ``deletable: false`` (so
  nbgrader's answer cells), split copies the metadata to every part, ``to_markdown`` moves it to the new cell
  (``transfer_to_new_cell``). Files in nbformat 4.4 have no cell ids.
* VS Code (``extensions/ipynb/src/deserializers.ts``, ``serializers.ts``, ``cellIdService.ts``;
  ``notebook/browser/controller/cellOperations.ts`` and the split command). Cell metadata is read and written back as it
  was, nbgrader's included, with keys sorted; ``editable`` and ``deletable`` are not enforced, so instructor cells can
  be edited and deleted (TU-Wien-dataLAB/grader-service#213). New cells get metadata ``{}`` and an 8-hex id. *Split*
  keeps the first part in the cell and gives the other parts metadata ``{}``; *join* appends the next cells' text to the
  first one, which keeps its metadata; changing the kind keeps the metadata; copy/paste copies the metadata and, until
  2024, the cell id too (microsoft/vscode#143396, #167951).
* Colab (closed source; seen in Colab-saved files). nbformat 4.0 without cell ids; each cell's metadata gets an ``id``
  (googlecolab/colabtools#581), code cells ``colab`` and ``outputId``; the notebook gets ``metadata.colab``. Whether
  other cell metadata survives is not documented (jax-ml/jax#2402 saw a custom key kept), so nothing here relies on
  it: a notebook without any nbgrader metadata is matched by content alone.

How cells are matched. The release has *instructor cells* (everything but answers: locked markdown, read-only code,
test cells) and *answer cells* (``solution: true``: a code stub or "YOUR ANSWER HERE"). First, instructor cells that
are nowhere as a cell of their own are looked for inside merged cells and cut out of them. Then instructor cells are
anchored in order: a submitted cell is an instructor cell by grade_id or by its normalised source, and the best
order-preserving set of such matches is kept (a weighted longest increasing subsequence); other copies are dropped.
Answers are found by grade_id, else by the functions and classes their stub defines (``def decompose_weight``, ``class
DoRALinear``) or, in place, by the stub's first line; written answers by position, as the markdown between their
question and the next instructor cell. A cell right after an answer's part continues it when it cannot stand alone (a
split's later parts lose their metadata in VS Code and Colab): code that is indented or parses only joined to the part
above, or any markdown after a written answer. The parts of a split answer are joined in order; an identical copy is
dropped; when several cells define the same stub function, the last one above its test cell is the answer (what the
notebook ran) and the others stay as plain cells. Cells that are none of these are kept after the release cell they
followed, without nbgrader metadata.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import nbformat

from labhelpers.errors import LabGradingError

# A top-level definition: `def name`, `async def name`, `class name`, or `name = ...` / `name: type = ...`.
_DEFINITION = re.compile(r"^(?:(?:async\s+)?def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)")
# An IPython line magic or shell command (a statement for IPython, a syntax error for ast).
_MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.MULTILINE)
# nbformat 4.5 cell ids: 1 to 64 letters, digits, '-' or '_'.
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LISTED = 6  # names a note lists before "and N more"


@dataclass(frozen=True)
class Tidied:
    """A submitted notebook rebuilt on the release, and what was repaired.

    Attributes:
        notebook: the release's cells in the release's order, each with the release's metadata and id; instructor
            cells keep the release's source, answer cells hold the student's answers; cells the student added sit
            between them without nbgrader metadata. No outputs; nbformat 4.5.
        answers: {answer grade_id: the student's answer}, the release's stub for a missing answer.
        added_code: the sources of the code cells the student added, in notebook order.
        notes: what was repaired, one short clause each (empty for a tidy notebook).
        missing: grade_ids of the answers that could not be found (their stub is kept).
    """

    notebook: nbformat.NotebookNode
    answers: dict[str, str]
    added_code: list[str]
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """Return the notes as one line for a status column ("" when nothing was repaired)."""
        return "repaired: " + "; ".join(self.notes) if self.notes else ""


@dataclass(frozen=True)
class _Slot:
    """One cell of the release."""

    index: int
    cell: nbformat.NotebookNode
    grade_id: str
    answer: bool
    test: bool
    norm: str
    names: frozenset[str]
    first_line: str


@dataclass
class _Part:
    """One submitted cell, or one piece of a merged cell cut around an instructor cell."""

    cell_type: str
    source: str
    norm: str
    grade_id: str | None
    cell_id: str | None
    from_merge: bool = False


def tidy(submitted: object, release: nbformat.NotebookNode) -> Tidied:
    """Rebuild a student's notebook on the release: instructor cells restored, answers in place, extra cells kept.

    Never raises on the submitted notebook: anything unreadable in it becomes an added cell or a note.

    Args:
        submitted: the student's notebook as nbformat read it (any editor, any nbformat 4 minor), or any object.
        release: the student notebook nbgrader generated (every cell has ``metadata.nbgrader`` with a grade_id).

    Returns:
        The tidied notebook, the answers, the added code, the notes and the missing answers.
    """
    slots = _slots(release)
    notes = _Notes()
    parts, unreadable = _parts(submitted, {slot.grade_id for slot in slots})
    if unreadable:
        notes.add("unreadable", f"{unreadable} unreadable cell{'s' if unreadable > 1 else ''} skipped")
    with_metadata = any(part.grade_id for part in parts)
    parts = _cut_merged(parts, slots, notes)
    chain = _anchor_chain(parts, slots)
    dropped, moved = _instructor_duplicates(parts, slots, chain, notes)
    regions = _regions(len(parts), chain, len(slots))
    found = _assign_answers(parts, slots, chain, regions, dropped, with_metadata, notes)
    placed = dict(chain)  # part position -> release index of the cell it became
    answers, missing = {}, []
    for slot in slots:
        if not slot.answer:
            continue
        positions = found.get(slot.index, [])
        kept, plain = _resolve(slot, positions, parts, chain, regions, notes)
        dropped |= set(positions) - set(kept) - plain
        if kept:
            joiner = "\n" if slot.cell.cell_type == "code" else "\n\n"
            answers[slot.grade_id] = joiner.join(parts[position].source for position in kept)
            placed.update((position, slot.index) for position in kept)
        else:
            answers[slot.grade_id] = slot.cell.source
            missing.append(slot.grade_id)
    _instructor_notes(parts, slots, chain, moved, notes)
    if not chain and len(missing) == sum(slot.answer for slot in slots):
        # Nothing of the lab is there: name the lost answers, not every instructor cell put back.
        notes.add(
            "nothing", "no cell of the lab notebook found" if parts or unreadable else "the notebook has no cells"
        )
        notes.drop("deleted")
    elif not with_metadata:
        notes.add("metadata", "nbgrader metadata missing (saved by another editor), cells matched by content")
    notes.add_names(
        "missing",
        "answer {} not found, graded as unanswered",
        "answers not found, graded as unanswered: {}",
        missing,
        limit=len(missing),  # every lost answer is named: it is what the student loses points for
    )
    added = [
        position
        for position, part in enumerate(parts)
        if position not in placed and position not in dropped and part.source.strip()
    ]
    notebook, added_code = _build(release, slots, answers, parts, added, placed)
    return Tidied(notebook=notebook, answers=answers, added_code=added_code, notes=notes.ordered(), missing=missing)


class _Notes:
    """Notes keyed by kind, printed in a fixed order whatever order they were found in."""

    ORDER = (
        "nothing",
        "unreadable",
        "metadata",
        "split",
        "merged",
        "duplicates",
        "versions",
        "moved",
        "types",
        "content",
        "edited",
        "deleted",
        "missing",
    )

    def __init__(self) -> None:
        self._notes: dict[str, list[str]] = {}
        self._duplicates: dict[int, list] = {}  # release index -> [its slot, copies dropped]

    def add(self, kind: str, text: str) -> None:
        self._notes.setdefault(kind, []).append(text)

    def add_names(self, kind: str, one: str, many: str, names: list[str], limit: int = _LISTED) -> None:
        """Add one note naming `names`: `one` formatted with the name, or `many` with the first `limit` of them."""
        if len(names) == 1:
            self.add(kind, one.format(names[0]))
        elif names:
            self.add(kind, many.format(_listed(names, limit)))

    def duplicate(self, slot: _Slot) -> None:
        """Count one dropped copy of a release cell (all copies make one note, however many were pasted)."""
        self._duplicates.setdefault(slot.index, [slot, 0])[1] += 1

    def drop(self, kind: str) -> None:
        self._notes.pop(kind, None)

    def ordered(self) -> list[str]:
        notes = {kind: list(texts) for kind, texts in self._notes.items()}
        duplicated = [self._duplicates[index] for index in sorted(self._duplicates)]
        if len(duplicated) == 1:
            ((slot, copies),) = duplicated
            what = f"{_kind(slot)} {slot.grade_id}"
            notes["duplicates"] = [
                f"duplicate {what} dropped" if copies == 1 else f"{copies} duplicates of {what} dropped"
            ]
        elif duplicated:
            notes["duplicates"] = [
                f"duplicates dropped: {_listed([f'{_kind(s)} {s.grade_id}' for s, _ in duplicated])}"
            ]
        return [text for kind in self.ORDER for text in notes.get(kind, [])]


def _listed(names: list[str], limit: int = _LISTED) -> str:
    """Return the first `limit` names, comma-separated, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _kind(slot: _Slot) -> str:
    """How a note calls a release cell: answer, test cell or instructor cell."""
    return "answer" if slot.answer else "test cell" if slot.test else "instructor cell"


def _normalise(text: str) -> str:
    """Return `text` as editors leave it comparable: \\n line ends, no trailing spaces, no blank lines around it."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _first_line(norm: str) -> str:
    return norm.split("\n", 1)[0]


def _names(text: str) -> set[str]:
    """Return the names a code cell defines at top level (def, class, assignment), read line by line."""
    return {found.group(1) or found.group(2) for found in map(_DEFINITION.match, text.split("\n")) if found}


def _stub_names(text: str) -> set[str]:
    """Return the functions and classes a stub defines: what identifies its answer wherever the student put it."""
    return {found.group(1) for found in map(_DEFINITION.match, text.split("\n")) if found and found.group(1)}


def _parses(text: str) -> bool:
    """Say whether a code cell is valid Python, IPython's %magics and !commands counting as statements."""
    python = _MAGIC.sub(r"\1pass", text)
    try:
        ast.parse(python)
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError on absurd nesting: all mean "no"
        return False
    return True


def _slots(release: nbformat.NotebookNode) -> list[_Slot]:
    """Describe every release cell: answer or instructor cell, test cell or not, normalised source, stub names."""
    slots = []
    for index, cell in enumerate(release.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not grade_id:
            raise LabGradingError(
                f"Release cell {index} has no nbgrader grade_id: the release must be generated by nbgrader "
                "(`dora-lab release`) from the instructor's notebook."
            )
        answer = bool(meta.get("solution"))
        norm = _normalise(cell.source)
        slots.append(
            _Slot(
                index=index,
                cell=cell,
                grade_id=grade_id,
                answer=answer,
                test=bool(meta.get("grade")) and not answer,
                norm=norm,
                names=frozenset(_stub_names(cell.source) if answer and cell.cell_type == "code" else ()),
                first_line=_first_line(norm),
            )
        )
    return slots


def _text(value: object) -> str:
    """Return a cell source as one string: nbformat's str, a list of lines, or anything else as empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return ""


def _parts(submitted: object, release_ids: set[str]) -> tuple[list[_Part], int]:
    """Read the submitted cells tolerantly; return them and how many were not cells at all."""
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
        source = _text(cell.get("source"))
        parts.append(
            _Part(
                cell_type=cell_type if cell_type in ("code", "markdown", "raw") else "raw",
                source=source,
                norm=_normalise(source),
                grade_id=grade_id if isinstance(grade_id, str) and grade_id in release_ids else None,
                cell_id=cell_id if isinstance(cell_id, str) else None,
            )
        )
    return parts, unreadable


def _cut_merged(parts: list[_Part], slots: list[_Slot], notes: _Notes) -> list[_Part]:
    """Cut instructor cells out of merged cells, when they are nowhere as a cell of their own.

    A merge (JupyterLab, Notebook, VS Code's join) leaves the instructor cell's lines whole inside the merged cell,
    next to the answer, and deletes the instructor cell. The text around them keeps the merged cell's grade_id when
    that was an answer's, so the answer is still found by it.
    """
    anchors = [slot for slot in slots if not slot.answer]
    anchor_ids = {slot.grade_id for slot in anchors}
    present = {part.norm for part in parts}
    separated = []
    # Longest first: a short instructor cell could be a few lines of a longer one.
    for anchor in sorted(anchors, key=lambda slot: (-len(slot.norm), slot.index)):
        if not anchor.norm or anchor.norm in present:
            continue
        block = anchor.norm.split("\n")
        for position, part in enumerate(parts):
            lines = part.norm.split("\n")
            start = _find_block(lines, block)
            if start < 0 or len(lines) == len(block):
                continue
            rest_id = part.grade_id if part.grade_id not in anchor_ids else None
            pieces = []
            for text, grade_id, cell_type in (
                (_normalise("\n".join(lines[:start])), rest_id, part.cell_type),
                (anchor.norm, anchor.grade_id, anchor.cell.cell_type),
                (_normalise("\n".join(lines[start + len(block) :])), rest_id, part.cell_type),
            ):
                if text:
                    pieces.append(_Part(cell_type, text, text, grade_id, None, from_merge=True))
                    present.add(text)
            parts = parts[:position] + pieces + parts[position + 1 :]
            separated.append(anchor)
            break
    separated.sort(key=lambda slot: slot.index)
    notes.add_names(
        "merged",
        "test cell {} separated from a merged cell",
        "test cells separated from merged cells: {}",
        [slot.grade_id for slot in separated if slot.test],
    )
    notes.add_names(
        "merged",
        "instructor cell {} separated from a merged cell",
        "instructor cells separated from merged cells: {}",
        [slot.grade_id for slot in separated if not slot.test],
    )
    return parts


def _find_block(lines: list[str], block: list[str]) -> int:
    """Return where `block` starts as consecutive whole lines of `lines`, or -1."""
    for start in range(len(lines) - len(block) + 1):
        if lines[start] == block[0] and lines[start : start + len(block)] == block:
            return start
    return -1


def _anchor_chain(parts: list[_Part], slots: list[_Slot]) -> dict[int, int]:
    """Match submitted parts to instructor cells, keeping the best order-preserving set of matches.

    A part matches an instructor cell by grade_id or by normalised source. A match scores 8, plus 2 for the same
    grade_id, 1 for the same source and 1 for the release's cell id (the original rather than a pasted copy), so the
    most matches win first. The chain with the highest total whose parts and release cells both increase is kept (a
    weighted longest increasing subsequence, O(n log n) with a Fenwick tree of prefix maxima), ties going to the
    earlier part.

    Returns:
        {part position: release index} of the chosen instructor cells.
    """
    by_norm: dict[str, list[_Slot]] = {}
    by_id = {}
    for slot in slots:
        if not slot.answer:
            by_norm.setdefault(slot.norm, []).append(slot)
            by_id[slot.grade_id] = slot
    pairs = []  # (part position, release index, score), in part order
    for position, part in enumerate(parts):
        candidates = {by_id[part.grade_id].index} if part.grade_id in by_id else set()
        candidates |= {slot.index for slot in by_norm.get(part.norm, [])} if part.norm else set()
        for index in sorted(candidates):
            slot = slots[index]
            score = 8 + 2 * (part.grade_id == slot.grade_id) + (part.norm == slot.norm)
            score += part.cell_id is not None and part.cell_id == slot.cell.get("id")
            pairs.append((position, index, score))
    size = len(slots)
    tree = [(0, 0, -1)] * (size + 1)  # Fenwick tree of (total, -part position, pair) maxima over release indices

    def best_below(index: int) -> tuple[int, int, int]:
        best = (0, 0, -1)
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


def _instructor_duplicates(
    parts: list[_Part], slots: list[_Slot], chain: dict[int, int], notes: _Notes
) -> tuple[set[int], set[int]]:
    """Drop exact copies of instructor cells: pasted duplicates, or a cell moved out of order (put back).

    Returns:
        (positions of the dropped parts, release indices of the instructor cells that had been moved).
    """
    by_norm = {slot.norm: slot for slot in slots if not slot.answer and slot.norm}
    matched = set(chain.values())
    dropped, duplicates, moved = set(), [], set()
    for position, part in enumerate(parts):
        slot = by_norm.get(part.norm)
        if position in chain or slot is None or part.grade_id not in (None, slot.grade_id):
            continue
        dropped.add(position)
        if slot.index in matched:
            duplicates.append(slot)
        else:
            moved.add(slot.index)
            matched.add(slot.index)
    for slot in duplicates:
        notes.duplicate(slot)
    notes.add_names(
        "moved",
        "instructor cell {} moved back into place",
        "instructor cells moved back into place: {}",
        [slots[index].grade_id for index in sorted(moved)],
    )
    return dropped, moved


def _regions(count: int, chain: dict[int, int], size: int) -> list[tuple[int, int]]:
    """Return, for each part, the release indices of the instructor cells matched just above and just below it."""
    above, regions = -1, []
    for position in range(count):
        regions.append((above, size))
        above = chain.get(position, above)
    below = size
    for position in range(count - 1, -1, -1):
        regions[position] = (regions[position][0], below)
        below = chain.get(position, below)
    return regions


def _assign_answers(
    parts: list[_Part],
    slots: list[_Slot],
    chain: dict[int, int],
    regions: list[tuple[int, int]],
    dropped: set[int],
    with_metadata: bool,
    notes: _Notes,
) -> dict[int, list[int]]:
    """Find each answer's parts: by grade_id, by the stub's definitions or first line, as a continuation, by position.

    Returns:
        {release index of the answer: positions of its parts, in the student's order}.
    """
    answers = {slot.grade_id: slot for slot in slots if slot.answer}
    first_lines: dict[str, list[_Slot]] = {}
    for slot in answers.values():
        first_lines.setdefault(slot.first_line, []).append(slot)
    owner: dict[int, _Slot] = {}
    by_content = set()
    free = [position for position in range(len(parts)) if position not in chain and position not in dropped]
    is_free = set(free)
    for position in free:
        part = parts[position]
        if part.grade_id in answers:
            owner[position] = answers[part.grade_id]
            continue
        if part.grade_id is not None:
            continue  # an instructor cell's metadata on a cell that is not that cell: an edited copy, kept as is
        names = _names(part.source) if part.cell_type == "code" else set()
        matches = [slot for slot in answers.values() if slot.names & names]
        same_start = first_lines.get(_first_line(part.norm), []) if part.norm else []
        if matches:
            owner[position] = max(matches, key=lambda slot: (len(slot.names & names), -slot.index))
        elif len(same_start) == 1 and part.cell_type == same_start[0].cell.cell_type:
            before, after = regions[position]
            if before < same_start[0].index < after:
                owner[position] = same_start[0]
        if position in owner:
            by_content.add(position)
    # Continuations: a split's later parts lose the grade_id in VS Code and Colab; they follow their first part.
    previous, so_far = None, {}  # the last part owned by an answer; each answer's text up to here
    for position, part in enumerate(parts):
        if position not in is_free:
            previous = None
        elif part.source.strip():
            after_part = position not in owner and part.grade_id is None and previous is not None
            if after_part and _continues(owner[previous], so_far[owner[previous].index], part):
                owner[position] = owner[previous]
            if position in owner:
                index = owner[position].index
                so_far[index] = so_far[index] + "\n" + part.source if index in so_far else part.source
            previous = position if position in owner else None
    # A written answer with no part of its own: the markdown between its question and the next instructor cell.
    found = {slot.index for slot in owner.values()}
    for slot in answers.values():
        if slot.index in found or slot.cell.cell_type != "markdown":
            continue
        for position in free:
            part = parts[position]
            if position in owner or part.grade_id is not None or part.cell_type != "markdown" or not part.norm:
                continue
            before, after = regions[position]
            if [other for other in answers.values() if before < other.index < after] == [slot]:
                owner[position] = slot
                by_content.add(position)
    if with_metadata:
        notes.add_names(
            "content",
            "answer {} found by content (nbgrader metadata missing)",
            "answers found by content (nbgrader metadata missing): {}",
            [slot.grade_id for slot in slots if any(owner[p] is slot and not parts[p].from_merge for p in by_content)],
        )
    found_parts: dict[int, list[int]] = {}
    for position in sorted(owner):
        found_parts.setdefault(owner[position].index, []).append(position)
    return found_parts


def _continues(slot: _Slot, so_far: str, part: _Part) -> bool:
    """Say whether `part` is the next piece of a split answer whose text up to it is `so_far`.

    Code continues the answer when it cannot stand alone (an indented first line, or a syntax error) and makes valid
    code joined to it; so a scratch cell that stands alone, or would break the answer, stays a cell of its own.
    """
    if slot.cell.cell_type == "markdown":
        return part.cell_type == "markdown"
    if part.cell_type != "code" or _names(part.source) & slot.names:
        return False
    first = next((line for line in part.source.split("\n") if line.strip()), "")
    alone = first[:1] not in (" ", "\t") and _parses(part.source)
    return not alone and _parses(so_far + "\n" + part.source)


def _resolve(
    slot: _Slot,
    positions: list[int],
    parts: list[_Part],
    chain: dict[int, int],
    regions: list[tuple[int, int]],
    notes: _Notes,
) -> tuple[list[int], set[int]]:
    """Choose which of an answer's parts make the answer: drop copies, pick one version of each stub definition.

    Returns:
        (positions joined into the answer, in order; positions to keep as plain cells instead).
    """
    positions = [position for position in positions if parts[position].source.strip()] or positions[:1]
    if not positions:
        return [], set()

    def in_place(position: int) -> bool:
        before, after = regions[position]
        return before < slot.index < after

    # Identical copies: keep one, the one where the answer belongs if there is one there.
    kept: dict[str, int] = {}
    for position in positions:
        norm = parts[position].norm
        if norm not in kept or (in_place(position) and not in_place(kept[norm])):
            kept[norm] = position
    for _ in range(len(positions) - len(kept)):
        notes.duplicate(slot)
    chosen = sorted(kept.values())
    plain: set[int] = set()
    if slot.names:
        # Versions: when several cells define a stub's function, the notebook ran the last one above the test.
        pieces: list[list[int]] = []
        for position in chosen:
            if _names(parts[position].source) & slot.names or not pieces:
                pieces.append([position])
            else:
                pieces[-1].append(position)
        test = min((part for part, index in chain.items() if index > slot.index), default=None)
        defining = {
            name: [i for i, piece in enumerate(pieces) if name in _names(parts[piece[0]].source)]
            for name in slot.names
        }
        graded = set()
        for found in defining.values():
            above = [i for i in found if test is None or pieces[i][0] < test]
            graded |= {above[-1] if above else found[0]} if found else set()
        versions = sorted({i for found in defining.values() for i in found})
        if len(versions) > len(graded):
            notes.add(
                "versions",
                f"answer {slot.grade_id} defined in {len(versions)} cells, the last one above its test graded, "
                "the others kept as plain cells",
            )
            plain = {position for i in versions if i not in graded for position in pieces[i]}
            chosen = [position for position in chosen if position not in plain]
    if len(chosen) > 1:
        notes.add("split", f"answer {slot.grade_id} split over {len(chosen)} cells, joined")
    if not in_place(chosen[0]):
        notes.add("moved", f"answer {slot.grade_id} moved back into place")
    if any(parts[position].cell_type != slot.cell.cell_type for position in chosen):
        notes.add("types", f"cell type restored: {slot.grade_id}")
    return chosen, plain


def _instructor_notes(
    parts: list[_Part], slots: list[_Slot], chain: dict[int, int], moved: set[int], notes: _Notes
) -> None:
    """Note the instructor cells that were edited (restored), deleted (put back) or changed type."""
    matched = {index: position for position, index in chain.items()}
    edited, deleted, retyped = [], [], []
    for slot in slots:
        if slot.answer or slot.index in moved:
            continue
        position = matched.get(slot.index)
        if position is None:
            deleted.append(slot)
        elif parts[position].norm != slot.norm:
            edited.append(slot)
        elif parts[position].cell_type != slot.cell.cell_type:
            retyped.append(slot)
    for kind, items in (("edited", edited), ("deleted", deleted)):
        word = "test" if all(slot.test for slot in items) else "instructor"
        notes.add_names(
            kind,
            f"{kind} {word} cell {{}} restored",
            f"{kind} {word} cells restored: {{}}",
            [s.grade_id for s in items],
        )
    notes.add_names("types", "cell type restored: {}", "cell types restored: {}", [slot.grade_id for slot in retyped])


def _build(
    release: nbformat.NotebookNode,
    slots: list[_Slot],
    answers: dict[str, str],
    parts: list[_Part],
    added: list[int],
    placed: dict[int, int],
) -> tuple[nbformat.NotebookNode, list[str]]:
    """Write the release with the answers in it, each added cell after the last release cell above it."""
    notebook = nbformat.v4.new_notebook(metadata=copy.deepcopy(dict(release.get("metadata", {}))))
    used = {cell.get("id") for cell in release.cells}
    after: dict[int, list[int]] = {}
    added_set, above = set(added), -1
    for position in range(len(parts)):
        above = max(above, placed.get(position, -1))
        if position in added_set:
            after.setdefault(above, []).append(position)
    added_code: list[str] = []
    counter = 0

    def add_plain(position: int) -> None:
        nonlocal counter
        part = parts[position]
        cell_id = part.cell_id if part.cell_id and _CELL_ID.match(part.cell_id) else None
        while cell_id is None or cell_id in used:
            counter += 1
            cell_id = f"added-{counter}"
        used.add(cell_id)
        cell = {"id": cell_id, "cell_type": part.cell_type, "metadata": {}, "source": part.source}
        if part.cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        # Built as plain JSON: nbformat.v4.new_*_cell validates each cell, 3 ms apiece.
        notebook.cells.append(nbformat.from_dict(cell))
        if part.cell_type == "code":
            added_code.append(part.source)

    for position in after.get(-1, []):
        add_plain(position)
    for index, slot in enumerate(slots):
        cell = copy.deepcopy(slot.cell)
        if slot.answer:
            cell.source = answers[slot.grade_id]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not isinstance(cell.get("id"), str) or not _CELL_ID.match(cell["id"]):
            cell["id"] = f"release-{index}"
        notebook.cells.append(cell)
        for position in after.get(index, []):
            add_plain(position)
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook, added_code
