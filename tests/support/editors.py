"""Honest edits: what real editors leave after ordinary editing, as data for the grading tests.

Each editor's behaviour is the one read in its source and described in labhelpers/grading/matching/__init__.py;
`tidy` must grade every result exactly like the unedited notebook.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nbformat

from labhelpers.assignment import RELEASE_NOTEBOOK
from labhelpers.errors import LabGradingError

_ANSWER = "decompose_weight"  # a code answer with one function
_ANSWER_TEST = "decompose_weight_matches_definition"  # the test cell right below it
_CLASS_ANSWER = "dora_linear"  # a code answer with a class of two methods
_TWO_FUNCTIONS = "training_loop"  # a code answer defining two functions
_MOVED_ANSWER = "make_peft_model"  # a code answer whose stub starts with an import
_WRITTEN = "ex3_written_answer"  # a written (markdown) answer
_QUESTION = "ex3_question"  # the question right above it
_MARKDOWN = "ex1_intro"  # a locked markdown cell
_COPIED_TEST = "dora_linear_matches_peft"
_CLASS_NAME = "DoRALinear"  # what the class answer defines
# A pasted image as JupyterLab stores it: named image.png, an 8x8 PNG, base64.
PASTED_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="
)


@dataclass(frozen=True)
class HonestEdit:
    """One way ordinary editing changes a student's notebook, and what `tidy` should report for it.

    Attributes:
        name: a short id (test ids, sample student ids).
        editor: the editor whose behaviour it reproduces.
        what: the edit, in words.
        edit: takes a filled student notebook, returns the edited copy as the editor saves it.
        notes: what `tidy` reports, in its order.
        rewrites: the answers whose text the edit changes (IPython syntax, an image, definitions moved to another
            cell); what the probes load from them, and every image, must still be the student's.
    """

    name: str
    editor: str
    what: str
    edit: Callable[[nbformat.NotebookNode], nbformat.NotebookNode]
    notes: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()


def _at(notebook: nbformat.NotebookNode, grade_id: str) -> int:
    for index, cell in enumerate(notebook.cells):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return index
    raise LabGradingError(
        f"The sample edits need the cell {grade_id!r}, which the release no longer has: update the constants at "
        "the HONEST_EDITS table in tests/support/editors.py."
    )


def _lab_id(rng: random.Random) -> str:
    """A JupyterLab 4 cell id: a UUID4 (jupyter_ydoc ycell.ts createCell: `cell.id ?? UUID.uuid4()`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _vscode_id(rng: random.Random) -> str:
    """A VS Code cell id: 8 hex digits (extensions/ipynb cellIdService.generateCellId)."""
    return f"{rng.getrandbits(32):08x}"


def _lab_cell(cell_type: str, source: str, metadata: dict, rng: random.Random) -> nbformat.NotebookNode:
    """A cell JupyterLab inserts from JSON (paste, split, merge, type change): a new id, no outputs."""
    make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    return make(source, metadata=copy.deepcopy(metadata), id=_lab_id(rng))


def _lab_paste(notebook, index: int, copied: int, rng: random.Random) -> None:
    """Copy cell `copied` and paste it at `index`: JSON without `deletable` (selectedCells), a new id."""
    cell = copy.deepcopy(notebook.cells[copied])
    cell.metadata.pop("deletable", None)
    cell["id"] = _lab_id(rng)
    notebook.cells.insert(index, cell)


def _lab_split(notebook, index: int, cuts: list[int], rng: random.Random) -> None:
    """Split a cell at character offsets (splitCell): clones with its full metadata, ends' newlines stripped."""
    cell = notebook.cells[index]
    bounds = [0, *cuts, len(cell.source)]
    clones = [
        _lab_cell(cell.cell_type, cell.source[start:end].strip("\n"), cell.metadata, rng)
        for start, end in zip(bounds, bounds[1:])
    ]
    notebook.cells[index : index + 1] = clones


def _lab_merge(notebook, first: int, count: int, active: int, rng: random.Random) -> None:
    """Merge cells first..first+count-1 (mergeCells): the active cell's type and metadata, sources joined by a
    blank line, locked cells deleted all the same (jupyterlab#11140)."""
    cells = notebook.cells[first : first + count]
    primary = notebook.cells[active]
    metadata = copy.deepcopy(primary.metadata)
    if primary.cell_type == "code":
        metadata["trusted"] = True
    merged = _lab_cell(primary.cell_type, "\n\n".join(cell.source for cell in cells), metadata, rng)
    notebook.cells[first : first + count] = [merged]


def _lab_change_type(notebook, index: int, cell_type: str, rng: random.Random) -> None:
    """Change a cell's type (changeCellType): a new cell, same source and metadata; code cells are trusted."""
    cell = notebook.cells[index]
    metadata = copy.deepcopy(cell.metadata)
    metadata.pop("trusted", None)
    if cell_type == "code":
        metadata["trusted"] = True
    notebook.cells[index] = _lab_cell(cell_type, cell.source, metadata, rng)


def _lab_insert(notebook, index: int, cell_type: str, source: str, rng: random.Random) -> None:
    """Insert a new cell and type into it (insertBelow; a markdown note is a code cell changed to markdown)."""
    notebook.cells.insert(index, _lab_cell(cell_type, source, {"trusted": True} if cell_type == "code" else {}, rng))


def _run_all(notebook: nbformat.NotebookNode) -> None:
    """Give every code cell what Run All leaves: an execution count and an output (an error for an unanswered stub)."""
    count = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        if "raise NotImplementedError()" in cell.source:
            output = nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=["..."])
        else:
            output = nbformat.v4.new_output("stream", name="stdout", text=f"output of cell {count}\n")
        cell.outputs = [output]


def _clear_outputs(notebook: nbformat.NotebookNode) -> None:
    """Clear all outputs (clearAllOutputs): outputs and execution counts only."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def _vscode_save(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Save as VS Code does: cell metadata as read, keys sorted (sortObjectPropertiesRecursively)."""
    return nbformat.reads(json.dumps(notebook, sort_keys=True), as_version=4)


def _colab_save(notebook: nbformat.NotebookNode, rng: random.Random) -> nbformat.NotebookNode:
    """Download from Colab: nbformat 4.0, no cell ids, Colab's cell metadata only (nbgrader's assumed lost)."""
    letters = string.ascii_letters + string.digits + "-_"
    cells = []
    for cell in notebook.cells:
        metadata = {"id": "".join(rng.choice(letters) for _ in range(12))}
        saved = {"cell_type": cell.cell_type, "metadata": metadata, "source": cell.source}
        if cell.cell_type == "code":
            metadata["colab"] = {"base_uri": "https://localhost:8080/"}
            if cell.outputs:
                metadata["outputId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            saved.update(execution_count=cell.execution_count, outputs=copy.deepcopy(cell.outputs))
        cells.append(saved)
    saved_notebook = {
        "nbformat": 4,
        "nbformat_minor": 0,
        "metadata": {
            "colab": {"provenance": []},
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        },
        "cells": cells,
    }
    return nbformat.reads(json.dumps(saved_notebook), as_version=4)


def _notebook6_save(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Save as an nbformat 4.4 notebook (classic Notebook before cell ids): no `id` on any cell."""
    saved = copy.deepcopy(notebook)
    saved.nbformat_minor = 4
    for cell in saved.cells:
        cell.pop("id", None)
    return nbformat.reads(nbformat.writes(saved), as_version=4)


def _editing(change: Callable[[nbformat.NotebookNode, random.Random], object]):
    """Turn `change(notebook, rng)` (in place, or returning a new notebook) into an edit of a copy."""

    def edit(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
        edited = copy.deepcopy(notebook)
        result = change(edited, random.Random(change.__name__))
        return edited if result is None else result

    edit.__name__ = change.__name__
    edit.__doc__ = change.__doc__
    return edit


def _after(source: str, text: str) -> int:
    """The offset just after the first `text` in `source` (where a student puts the cursor to split)."""
    found = source.find(text)
    if found < 0:
        raise LabGradingError(
            f"The sample split needs {text!r} in the cell; the release changed: update tests/support/editors.py."
        )
    return found + len(text)


@_editing
def lab_paste_answer(nb, rng):
    _lab_paste(nb, _at(nb, _ANSWER) + 1, _at(nb, _ANSWER), rng)


@_editing
def lab_paste_test(nb, rng):
    _lab_paste(nb, _at(nb, _ANSWER_TEST) + 1, _at(nb, _ANSWER_TEST), rng)


@_editing
def lab_paste_markdown(nb, rng):
    _lab_paste(nb, len(nb.cells), _at(nb, _MARKDOWN), rng)


@_editing
def lab_paste_written_answer(nb, rng):
    _lab_paste(nb, _at(nb, _WRITTEN) + 1, _at(nb, _WRITTEN), rng)


def _docstring_end(source: str) -> int:
    """The offset of the first line after a function's docstring (a split there cuts the function in two)."""
    opening = _after(source, '"""')
    return opening + _after(source[opening:], '"""\n')


@_editing
def lab_split_in_function(nb, rng):
    index = _at(nb, _ANSWER)
    _lab_split(nb, index, [_docstring_end(nb.cells[index].source)], rng)


@_editing
def lab_split_between_functions(nb, rng):
    index = _at(nb, _TWO_FUNCTIONS)
    source = nb.cells[index].source
    second = source.find("\ndef ", 1)
    if second < 0:
        raise LabGradingError(
            f"The sample split needs two functions in {_TWO_FUNCTIONS}: update tests/support/editors.py."
        )
    _lab_split(nb, index, [second], rng)


@_editing
def lab_merge_answer_with_test(nb, rng):
    index = _at(nb, _ANSWER)
    _lab_merge(nb, index, 2, index, rng)


@_editing
def lab_merge_written_answer_with_question(nb, rng):
    index = _at(nb, _WRITTEN)
    if _at(nb, _QUESTION) != index - 1:
        raise LabGradingError(
            f"The sample merge needs {_QUESTION} right above {_WRITTEN}: update tests/support/editors.py."
        )
    _lab_merge(nb, index - 1, 2, index, rng)


@_editing
def lab_move_answer_up(nb, rng):
    index = _at(nb, _ANSWER)
    nb.cells.insert(index - 1, nb.cells.pop(index))


@_editing
def lab_add_cells(nb, rng):
    _lab_insert(nb, len(nb.cells), "code", "print('scratch at the end')", rng)
    _lab_insert(nb, _at(nb, _WRITTEN), "markdown", "My notes before answering: look at step 0.", rng)
    _lab_insert(nb, _at(nb, _ANSWER_TEST) + 1, "code", "W = torch.randn(4, 3)\nprint(decompose_weight(W))", rng)
    _lab_insert(nb, _at(nb, _ANSWER_TEST) + 1, "code", "", rng)  # an empty cell left behind
    _lab_insert(nb, _at(nb, _MARKDOWN) + 1, "markdown", "*Note to self:* magnitude is per row.", rng)
    _lab_insert(nb, 0, "code", "%load_ext autoreload", rng)


@_editing
def lab_type_changed_back(nb, rng):
    _lab_change_type(nb, _at(nb, _ANSWER), "markdown", rng)
    _lab_change_type(nb, _at(nb, _ANSWER), "code", rng)


@_editing
def lab_type_changed(nb, rng):
    _lab_change_type(nb, _at(nb, _ANSWER), "markdown", rng)


@_editing
def lab_run_all(nb, rng):
    _run_all(nb)


@_editing
def lab_clear_outputs(nb, rng):
    _run_all(nb)
    _clear_outputs(nb)


@_editing
def notebook6_save(nb, rng):
    _run_all(nb)
    return _notebook6_save(nb)


@_editing
def vscode_add_cell(nb, rng):
    index = _at(nb, _ANSWER_TEST) + 1
    nb.cells.insert(index, nbformat.v4.new_code_cell("decompose_weight(torch.eye(3))", id=_vscode_id(rng)))
    _run_all(nb)
    return _vscode_save(nb)


@_editing
def vscode_split_class(nb, rng):
    index = _at(nb, _CLASS_ANSWER)
    cell = nb.cells[index]
    cut = _after(cell.source, "\n\n    def forward") - len("    def forward")
    # VS Code keeps the first part in the cell and makes new cells, metadata {}, of the others.
    tail = nbformat.v4.new_code_cell(cell.source[cut:], id=_vscode_id(rng))
    cell.source = cell.source[:cut]
    nb.cells.insert(index + 1, tail)
    return _vscode_save(nb)


@_editing
def vscode_paste_same_id(nb, rng):
    # Before microsoft/vscode#143396 was fixed, a pasted cell kept the copied cell's metadata and id.
    index = _at(nb, _COPIED_TEST)
    nb.cells.insert(index + 1, copy.deepcopy(nb.cells[index]))
    return nbformat.from_dict(json.loads(json.dumps(nb, sort_keys=True)))


@_editing
def vscode_join_answer_with_test(nb, rng):
    index = _at(nb, _ANSWER)
    # joinNotebookCells 'below': the next cell's text appended after a line break, the next cell deleted.
    nb.cells[index].source += "\n" + nb.cells[index + 1].source
    del nb.cells[index + 1]
    return _vscode_save(nb)


@_editing
def colab_save(nb, rng):
    _run_all(nb)
    return _colab_save(nb, rng)


@_editing
def everything_then_colab(nb, rng):
    _lab_paste(nb, _at(nb, _COPIED_TEST) + 1, _at(nb, _COPIED_TEST), rng)
    _lab_split(nb, _at(nb, _ANSWER), [_docstring_end(nb.cells[_at(nb, _ANSWER)].source)], rng)
    index = _at(nb, _TWO_FUNCTIONS)
    _lab_split(nb, index, [nb.cells[index].source.find("\ndef ", 1)], rng)
    index = _at(nb, _WRITTEN)
    _lab_merge(nb, index - 1, 2, index, rng)
    index = _at(nb, _MOVED_ANSWER)
    nb.cells.insert(index - 2, nb.cells.pop(index))  # two cells up: above its exercise's heading
    _lab_change_type(nb, _at(nb, _CLASS_ANSWER), "markdown", rng)
    _lab_change_type(nb, _at(nb, _CLASS_ANSWER), "code", rng)
    _lab_insert(nb, _at(nb, _ANSWER_TEST) + 1, "code", "W = torch.randn(4, 3)\nprint(decompose_weight(W))", rng)
    _lab_insert(nb, 1, "markdown", "Started on Monday.", rng)
    _run_all(nb)
    return _colab_save(nb, rng)


@functools.cache
def _stubs() -> dict[str, str]:
    """{grade_id: source} of the release's answer cells as a student receives them (the stubs)."""
    release = nbformat.read(RELEASE_NOTEBOOK, as_version=4)
    return {
        cell.metadata.nbgrader.grade_id: cell.source
        for cell in release.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


@_editing
def lab_ipython_syntax(nb, rng):
    index = _at(nb, _ANSWER)
    nb.cells[index].source = "%%time\n" + nb.cells[index].source
    index = _at(nb, _CLASS_ANSWER)
    nb.cells[index].source = (
        "!pip install peft\n%load_ext autoreload\n%autoreload 2\n%matplotlib inline\n"
        + nb.cells[index].source
        + f"\n\n\n{_CLASS_NAME}?"
    )
    index = _at(nb, _TWO_FUNCTIONS)
    nb.cells[index].source = "%%capture captured\n?print\n" + nb.cells[index].source


@_editing
def lab_answers_in_first_cell(nb, rng):
    # The class typed into the first answer cell, below its answer; the class's own cell never touched.
    first, own = _at(nb, _ANSWER), _at(nb, _CLASS_ANSWER)
    nb.cells[first].source += "\n\n\n" + nb.cells[own].source
    nb.cells[own].source = _stubs()[_CLASS_ANSWER]


@_editing
def lab_answers_in_first_cell_own_deleted(nb, rng):
    first, own = _at(nb, _ANSWER), _at(nb, _CLASS_ANSWER)
    nb.cells[first].source += "\n\n\n" + nb.cells[own].source
    del nb.cells[own]


@_editing
def lab_answer_in_added_cell_above_stub(nb, rng):
    own = _at(nb, _CLASS_ANSWER)
    _lab_insert(nb, own, "code", nb.cells[own].source, rng)
    nb.cells[own + 1].source = _stubs()[_CLASS_ANSWER]


@_editing
def lab_pasted_image(nb, rng):
    # JupyterLab 4, Ctrl-V of a screenshot into a markdown cell: the image becomes a cell attachment.
    cell = nb.cells[_at(nb, _WRITTEN)]
    cell.source += "\n\n![image.png](attachment:image.png)"
    cell["attachments"] = {"image.png": {"image/png": PASTED_IMAGE}}


HONEST_EDITS: tuple[HonestEdit, ...] = (
    HonestEdit(
        "lab_paste_answer",
        "JupyterLab 4",
        "copy an answer cell, paste it below",
        lab_paste_answer,
        (f"duplicate answer {_ANSWER} dropped",),
    ),
    HonestEdit(
        "lab_paste_test",
        "JupyterLab 4",
        "copy a test cell, paste it below",
        lab_paste_test,
        (f"duplicate test cell {_ANSWER_TEST} dropped",),
    ),
    HonestEdit(
        "lab_paste_markdown",
        "JupyterLab 4",
        "copy a locked markdown cell, paste it at the end",
        lab_paste_markdown,
        (f"duplicate instructor cell {_MARKDOWN} dropped",),
    ),
    HonestEdit(
        "lab_paste_written_answer",
        "JupyterLab 4",
        "copy a written-answer cell, paste it below",
        lab_paste_written_answer,
        (f"duplicate answer {_WRITTEN} dropped",),
    ),
    HonestEdit(
        "lab_split_in_function",
        "JupyterLab 4",
        "split an answer in the middle of its function (Ctrl-Shift-minus)",
        lab_split_in_function,
        (f"answer {_ANSWER} split over 2 cells, joined",),
    ),
    HonestEdit(
        "lab_split_between_functions",
        "JupyterLab 4",
        "split an answer between its two functions",
        lab_split_between_functions,
        (f"answer {_TWO_FUNCTIONS} split over 2 cells, joined",),
    ),
    HonestEdit(
        "lab_merge_answer_with_test",
        "JupyterLab 4",
        "merge an answer cell with the test cell below it",
        lab_merge_answer_with_test,
        (f"test cell {_ANSWER_TEST} separated from a merged cell",),
    ),
    HonestEdit(
        "lab_merge_written_answer_with_question",
        "JupyterLab 4",
        "merge a written answer with its question above",
        lab_merge_written_answer_with_question,
        (f"instructor cell {_QUESTION} separated from a merged cell",),
    ),
    HonestEdit(
        "lab_move_answer_up",
        "JupyterLab 4",
        "move an answer cell up, above its exercise's text",
        lab_move_answer_up,
        (f"answer {_ANSWER} moved back into place",),
    ),
    HonestEdit(
        "lab_add_cells",
        "JupyterLab 4",
        "add scratch code, notes and an empty cell here and there",
        lab_add_cells,
    ),
    HonestEdit(
        "lab_type_changed_back",
        "JupyterLab 4",
        "change an answer cell to markdown and back to code",
        lab_type_changed_back,
    ),
    HonestEdit(
        "lab_type_changed",
        "JupyterLab 4",
        "change an answer cell to markdown (and leave it)",
        lab_type_changed,
        (f"cell type restored: {_ANSWER}",),
    ),
    HonestEdit("lab_run_all", "JupyterLab 4", "run all and save with outputs", lab_run_all),
    HonestEdit("lab_clear_outputs", "JupyterLab 4", "run all, clear all outputs, save", lab_clear_outputs),
    HonestEdit("notebook6_save", "Notebook 6", "run all and save as nbformat 4.4 (no cell ids)", notebook6_save),
    HonestEdit("vscode_add_cell", "VS Code", "add a cell, run all, save", vscode_add_cell),
    HonestEdit(
        "vscode_split_class",
        "VS Code",
        "split a class answer between its methods (the new cell has no metadata)",
        vscode_split_class,
        (f"answer {_CLASS_ANSWER} split over 2 cells, joined",),
    ),
    HonestEdit(
        "vscode_paste_same_id",
        "VS Code",
        "copy a test cell and paste it below, keeping its id (VS Code before 2024)",
        vscode_paste_same_id,
        (f"duplicate test cell {_COPIED_TEST} dropped",),
    ),
    HonestEdit(
        "vscode_join_answer_with_test",
        "VS Code",
        "join an answer cell with the test cell below it",
        vscode_join_answer_with_test,
        (f"test cell {_ANSWER_TEST} separated from a merged cell",),
    ),
    HonestEdit(
        "colab_save",
        "Colab",
        "run all, download (no nbgrader metadata, no cell ids, nbformat 4.0)",
        colab_save,
        ("nbgrader metadata missing (saved by another editor), cells matched by content",),
    ),
    HonestEdit(
        "everything_then_colab",
        "JupyterLab 4, then Colab",
        "paste a test copy, split two answers, merge a written answer with its question, move an answer, change a "
        "type and back, add cells, run all; then download from Colab",
        everything_then_colab,
        (
            "nbgrader metadata missing (saved by another editor), cells matched by content",
            f"answer {_ANSWER} split over 2 cells, joined",
            f"answer {_TWO_FUNCTIONS} split over 2 cells, joined",
            f"instructor cell {_QUESTION} separated from a merged cell",
            f"duplicate test cell {_COPIED_TEST} dropped",
            f"answer {_MOVED_ANSWER} moved back into place",
        ),
    ),
    HonestEdit(
        "lab_ipython_syntax",
        "JupyterLab 4",
        "IPython in answer cells: a %%time and a %%capture cell magic, !pip install, %load_ext, %matplotlib, `?`",
        lab_ipython_syntax,
        rewrites=(_ANSWER, _CLASS_ANSWER, _TWO_FUNCTIONS),
    ),
    HonestEdit(
        "lab_answers_in_first_cell",
        "JupyterLab 4",
        "write the class answer in the first answer cell and leave the class's own cell with its stub",
        lab_answers_in_first_cell,
        (f"{_CLASS_NAME} found in answer cell {_ANSWER}",),
        rewrites=(_ANSWER, _CLASS_ANSWER),
    ),
    HonestEdit(
        "lab_answers_in_first_cell_own_deleted",
        "JupyterLab 4",
        "write the class answer in the first answer cell and delete the class's own cell",
        lab_answers_in_first_cell_own_deleted,
        (f"{_CLASS_NAME} found in answer cell {_ANSWER}",),
        rewrites=(_ANSWER, _CLASS_ANSWER),
    ),
    HonestEdit(
        "lab_answer_in_added_cell_above_stub",
        "JupyterLab 4",
        "write the class answer in a new cell above its answer cell, the stub left below it",
        lab_answer_in_added_cell_above_stub,
        (f"answer {_CLASS_ANSWER} found by content (nbgrader metadata missing)",),
    ),
    HonestEdit(
        "lab_pasted_image",
        "JupyterLab 4",
        "paste an image into a written answer (a cell attachment)",
        lab_pasted_image,
        rewrites=(_WRITTEN,),
    ),
)
