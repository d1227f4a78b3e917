"""Find each graded definition wherever the student wrote it, so that an untouched stub never shadows it.

Students gather answers: every definition typed into the first answer cell, the other answer cells left with their
stubs or deleted. Run top to bottom, such a notebook redefines each gathered name by its stub (``raise
NotImplementedError()``) and loses it; a deleted answer cell comes back with its stub, which does the same. Here the
graded definition of each name a code answer's stub defines (``DoRALinear``, ``train_one_epoch``: read from the
release, never listed) is the last definition of that name, in the rebuilt notebook's order (the probes load the cells
in that order), that is not the untouched stub. When the answer's own cell has none, the stub's definition of that name
is taken out of the cell, a comment there says where the graded one is, and a note names the cell. Only what the
student wrote counts as a definition found elsewhere (def, class, assignment): an import of the name (the lab's own
function, tried out in a scratch cell) never stands in for an unanswered exercise.
"""

from __future__ import annotations

import ast
import functools

from labhelpers.grading.matching.build import added_after
from labhelpers.grading.matching.notes import listed
from labhelpers.grading.matching.state import Matching
from labhelpers.grading.matching.text import normalise
from labhelpers.probes.cells import bound_names, python_statements

_Definitions = dict[str, list[tuple[bool, bool]]]
"""{name: (the stub's own definition, written in the cell) of each top-level statement binding it, in order}."""


def place_definitions(matching: Matching) -> None:
    """Point each code answer whose own cell lacks its definitions to where they are; note where each was found.

    An answer found this way is no longer missing; its cell keeps what its stub holds besides those definitions.
    """
    stubs = {
        name: node
        for cell in matching.release
        if cell.answer and cell.names and cell.cell_type == "code"
        for name, node in _stub_definitions(cell.cell.source, cell.names).items()
    }
    lacking = _lacking(matching)
    if not lacking:
        return
    loaded = _loaded_cells(matching, {name: stubs[name] for names in lacking.values() for name in names})
    found_where: dict[str, list[str]] = {}  # where: the names found there, in the release's order
    for cell in matching.release:
        if cell.grade_id not in lacking:
            continue
        found = {name: where for name in lacking[cell.grade_id] if (where := _last_real(loaded, cell.grade_id, name))}
        rest = _without(matching.answers[cell.grade_id], {name: stubs[name] for name in found}) if found else None
        if rest is None:
            continue
        pointers = [f"# {name}: graded from its definition in {where}" for name, where in found.items()]
        matching.answers[cell.grade_id] = "\n\n".join(filter(None, [rest, "\n".join(pointers)]))
        if cell.grade_id in matching.missing:
            matching.missing.remove(cell.grade_id)
        for name, where in found.items():
            found_where.setdefault(where, []).append(name)
    for where, names in found_where.items():
        matching.notes.add("found", f"{listed(names)} found in {where}")


def _lacking(matching: Matching) -> dict[str, list[str]]:
    """Return {code answer's grade_id: the names its stub defines that its own cell defines only by the stub}.

    An answer whose own cell does not parse is left out: the probes cannot load it, and nothing here can mend that.
    """
    lacking = {}
    for cell in matching.release:
        if not (cell.answer and cell.names and cell.cell_type == "code"):
            continue
        text = matching.answers[cell.grade_id]
        mine = _stub_definitions(cell.cell.source, cell.names)  # in the stub's order
        own = {} if normalise(text) == cell.norm else _definitions(text, mine)  # the untouched stub answers nothing
        if own is None:
            continue
        names = [name for name in mine if all(stub for stub, _ in own.get(name, []))]
        if names:
            lacking[cell.grade_id] = names
    return lacking


def _loaded_cells(matching: Matching, stubs: dict[str, ast.stmt]) -> list[tuple[str | None, str, _Definitions]]:
    """Return (answer grade_id or None, where, {name: its definitions}) of each code cell the probes load, in order.

    Only the names of `stubs` are looked for, in the cells whose text holds one of them.
    """
    after = added_after(matching)
    cells = []
    for index in range(-1, len(matching.release)):
        release = matching.release[index] if index >= 0 else None
        if release is not None and release.answer and release.cell_type == "code":
            cells.append((release.grade_id, f"answer cell {release.grade_id}", matching.answers[release.grade_id]))
        for position in after.get(index, []):
            if matching.parts[position].cell_type == "code":
                cells.append((None, "an added cell", matching.parts[position].source))
    return [
        (grade_id, where, (_definitions(source, stubs) or {}) if any(name in source for name in stubs) else {})
        for grade_id, where, source in cells
    ]


def _definitions(source: str, stubs: dict[str, ast.stmt]) -> _Definitions | None:
    """Return the definitions of the names of `stubs` in a cell, in order (None: the cell does not parse).

    Returns:
        {name: (the stub's own definition, written in the cell: a def, class or assignment, not an import)}.
    """
    try:
        statements, _ = python_statements(source)
    except Exception:  # SyntaxError, or IPython's transformer failing on a broken cell: nothing is loaded from it
        return None
    found: _Definitions = {}
    for node in statements:
        written = not isinstance(node, (ast.Import, ast.ImportFrom))
        for name in bound_names(node):
            if name in stubs:
                found.setdefault(name, []).append((same_tree(node, stubs[name]), written))
    return found


@functools.lru_cache(maxsize=64)
def _stub_definitions(stub: str, names: frozenset[str]) -> dict[str, ast.stmt]:
    """Return {name: the stub's definition of it} for the names an answer's stub defines."""
    return {
        node.name: node
        for node in python_statements(stub)[0]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names
    }


def _last_real(loaded: list[tuple[str | None, str, _Definitions]], grade_id: str, name: str) -> str | None:
    """Return where the last definition of `name` written outside answer `grade_id`'s cell, not its stub, is."""
    where = None
    for owner, place, definitions in loaded:
        if owner != grade_id and any(written and not stub for stub, written in definitions.get(name, [])):
            where = place
    return where


def _without(source: str, stubs: dict[str, ast.stmt]) -> str | None:
    """Return `source` without the stubs' definitions of their names (None when they cannot be cut out of it)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # IPython syntax: definitions can only be cut out of plain Python; without any stub definition, none need be.
        statements, _ = python_statements(source)
        stubbed = any(
            same_tree(node, stubs[getattr(node, "name", "")])
            for node in statements
            if getattr(node, "name", "") in stubs
        )
        return None if stubbed else normalise(source)
    lines = source.replace("\r\n", "\n").split("\n")
    dropped: set[int] = set()
    for node in tree.body:
        name = getattr(node, "name", None)
        if name in stubs and same_tree(node, stubs[name]):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            dropped.update(range(first - 1, node.end_lineno))
    return normalise("\n".join(line for number, line in enumerate(lines) if number not in dropped))


def same_tree(first: object, second: object) -> bool:
    """Say whether two syntax trees are the same code, positions aside (ast.dump's equality, stopping at a difference)."""
    if type(first) is not type(second):
        return False
    if isinstance(first, ast.AST):
        return all(same_tree(getattr(first, name, None), getattr(second, name, None)) for name in first._fields)
    if isinstance(first, list):
        return len(first) == len(second) and all(map(same_tree, first, second))
    return first == second
