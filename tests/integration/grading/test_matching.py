"""Cell matching: every honest edit of the release is rebuilt as if tidy, and real nbgrader accepts the result.

nbgrader's checks are the ones `nbgrader autograde` runs on a submission before executing it
(``Autograde.sanitize_preprocessors``), against a gradebook made by nbgrader's own generate_assignment. No kernel.
Notebooks far from honest are in test_matching_robustness.py, the steps' own cases in test_matching_steps.py.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat
import pytest
from nbformat.warnings import DuplicateCellId

from labhelpers.grading.course import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK, course_config, generate_assignment
from labhelpers.grading.matching import tidy
from labhelpers.grading.matching.release import read_release
from labhelpers.grading.samples import answered, answers_of_exercises, solution_sources
from labhelpers.grading.worker import _answers
from labhelpers.probes.cells import bound_names
from labhelpers.probes.runner import statements
from tests.support.editors import HONEST_EDITS

ANSWER_SETS = {
    "perfect": lambda source: solution_sources(source),
    "exercises_1_2": lambda source: answers_of_exercises(source, {1, 2}),
}
EDITS = {edit.name: edit for edit in HONEST_EDITS}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A real nbgrader course: the instructor's notebook, its gradebook and the release nbgrader generated from it."""
    root = tmp_path_factory.mktemp("course")
    source_path = root / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    source_path.parent.mkdir(parents=True)
    shutil.copyfile(SOURCE_NOTEBOOK, source_path)
    release_path = generate_assignment(course_config(root, root / "gradebook.db"), use_database=True)
    return {
        "source": nbformat.read(source_path, as_version=4),
        "release": nbformat.read(release_path, as_version=4),
        "db_url": f"sqlite:///{root / 'gradebook.db'}",
    }


@pytest.fixture(scope="module")
def filled(course):
    """{answer set: the release with those answers}, as a student would hand it in untouched."""
    return {name: answered(course["release"], pick(course["source"])) for name, pick in ANSWER_SETS.items()}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_verdicts: dict[str, tuple[list, list[str]]] = {}


def nbgrader_sanitize(notebook: nbformat.NotebookNode, db_url: str) -> tuple[list, list[str]]:
    """Run nbgrader autograde's checks before execution; return the nbgrader cells it leaves and its warnings.

    Raises whatever nbgrader raises (a duplicated or broken grade_id fails here, as in `nbgrader autograde`).
    These preprocessors read cell types, ids, metadata and the sources of locked cells only, so their verdict is
    cached under a key holding all of that (answer and plain cells' sources left out).
    """
    from nbgrader.converters.autograde import Autograde
    from traitlets.config import Config

    key_cells = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        locked = meta.get("locked") or (meta.get("grade") and not meta.get("solution"))
        key_cells.append({**cell, "source": cell.source if locked else None, "outputs": None})
    key = json.dumps([db_url, key_cells, notebook.metadata], sort_keys=True, default=str)
    if key not in _verdicts:
        records = _Records()
        log = logging.getLogger(f"nbgrader-check-{len(_verdicts)}")
        log.addHandler(records)
        log.propagate = False
        config = Config()
        config.OverwriteCells.add_missing_cells = True  # as labhelpers.grading.worker configures autograde
        resources = {"nbgrader": {"notebook": NOTEBOOK, "assignment": ASSIGNMENT, "db_url": db_url}}
        checked = copy.deepcopy(notebook)
        for preprocessor in Autograde.class_traits()["sanitize_preprocessors"].default():
            checked, resources = preprocessor(config=config, log=log).preprocess(checked, resources)
        graded = [
            (cell.cell_type, meta.get("grade_id"), None if meta.get("solution") else cell.source)
            for cell in checked.cells
            for meta in [cell.metadata.get("nbgrader")]
            if meta
        ]
        _verdicts[key] = (graded, records.messages)
    return _verdicts[key]


def _squash(text: str) -> str:
    """The text without blank lines or trailing spaces: what splitting and joining may change."""
    return "\n".join(line.rstrip() for line in text.split("\n") if line.strip())


def _graded_definitions(notebook: nbformat.NotebookNode, names: set[str]) -> dict[str, str]:
    """{name: AST of its last definition} the probes load from the cells the grader gives them (the last one wins)."""
    found = {}
    for answer in _answers(notebook):
        for module in statements(answer["source"])[0]:
            found.update((name, ast.dump(module.body[0])) for name in bound_names(module.body[0]) if name in names)
    return found


def _images(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(name, data) of every image attached to a cell."""
    return sorted(
        (name, json.dumps(bundle, sort_keys=True))
        for cell in notebook.cells
        for name, bundle in cell.get("attachments", {}).items()
    )


@pytest.mark.parametrize("answer_set", ANSWER_SETS)
@pytest.mark.parametrize("edit", HONEST_EDITS, ids=[edit.name for edit in HONEST_EDITS])
def test_honest_edit_is_graded_as_if_tidy(edit, answer_set, course, filled):
    release, untouched = course["release"], filled[answer_set]
    # Saved and read back as the grader reads a submission (nbformat repairs duplicate cell ids, with a warning).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateCellId)
        edited = nbformat.reads(nbformat.writes(edit.edit(untouched)), as_version=4)
    tidied = tidy(edited, release)

    assert tidied.notes == list(edit.notes)
    assert tidied.missing == []
    # The release's cells, in its order, with its metadata and ids; instructor cells keep the release's source.
    graded = [cell for cell in tidied.notebook.cells if "nbgrader" in cell.metadata]
    assert [cell.id for cell in graded] == [cell.id for cell in release.cells]
    for mine, theirs in zip(graded, release.cells):
        assert (mine.cell_type, mine.metadata) == (theirs.cell_type, theirs.metadata)
        if not theirs.metadata.nbgrader.get("solution"):
            assert mine.source == theirs.source
    # Each answer is the student's (a split answer joined in order), and it is what the answer cell holds; the probes
    # load the student's definitions, wherever they were written, and every pasted image is kept.
    for cell in untouched.cells:
        if cell.metadata.nbgrader.get("solution"):
            grade_id = cell.metadata.nbgrader.grade_id
            assert grade_id in edit.rewrites or _squash(tidied.answers[grade_id]) == _squash(cell.source), grade_id
            if cell.cell_type == "code":
                statements(tidied.answers[grade_id])  # parses, IPython syntax allowed
    names = {name for cell in read_release(release) for name in cell.names}
    assert _graded_definitions(tidied.notebook, names) == _graded_definitions(untouched, names)
    assert _images(tidied.notebook) == _images(edited)
    assert {cell.metadata.nbgrader.grade_id: cell.source for cell in graded if cell.metadata.nbgrader.solution} == (
        tidied.answers
    )
    added = [cell for cell in tidied.notebook.cells if "nbgrader" not in cell.metadata]
    assert all(cell.metadata == {} for cell in added)
    assert [cell.source for cell in added if cell.cell_type == "code"] == tidied.added_code
    # No outputs, valid nbformat 4.5, and nbgrader treats it exactly like the untouched notebook.
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in tidied.notebook.cells)
    assert (tidied.notebook.nbformat, tidied.notebook.nbformat_minor) == (4, 5)
    nbformat.validate(tidied.notebook)
    assert nbgrader_sanitize(tidied.notebook, course["db_url"]) == nbgrader_sanitize(untouched, course["db_url"])


# Why `tidy` exists: nbgrader 0.9.6's own autograde crashes on these notebooks as handed in. A duplicated or split cell
# leaves an emptied nbgrader block (DeduplicateIds), a Colab notebook has none; OverwriteCells, putting missing cells
# back as the worker asks, then fails on a KeyError (jupyter/nbgrader#1083). If nbgrader stops failing, update this.
FAILS_IN_NBGRADER = ["lab_paste_answer", "lab_split_in_function", "vscode_paste_same_id", "colab_save"]


@pytest.mark.parametrize("name", FAILS_IN_NBGRADER)
def test_nbgrader_alone_fails_on_the_edit(name, course, filled):
    with pytest.raises(KeyError):
        nbgrader_sanitize(EDITS[name].edit(filled["perfect"]), course["db_url"])


def _cell(notebook, grade_id):
    return next(
        i for i, cell in enumerate(notebook.cells) if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def _answer_deleted(nb):
    del nb.cells[_cell(nb, "decompose_weight")]  # VS Code does not enforce `deletable: false`


def _test_edited(nb):
    nb.cells[_cell(nb, "decompose_weight_matches_definition")].source = "pass  # checked it myself"


def _test_deleted(nb):
    del nb.cells[_cell(nb, "decompose_weight_matches_definition")]


def _markdown_moved_to_end(nb):
    nb.cells.append(nb.cells.pop(_cell(nb, "ex1_real_intro")))


def _answer_in_new_cell(nb):
    index = _cell(nb, "decompose_weight")
    nb.cells[index] = nbformat.v4.new_code_cell(nb.cells[index].source)  # stub deleted, answer typed in a new cell


def _split_in_three_vscode(nb):
    index = _cell(nb, "decompose_weight")  # VS Code: the later parts get metadata {} (no grade_id)
    lines = nb.cells[index].source.split("\n")
    cuts = [len(lines) - 3, len(lines) - 2]
    nb.cells[index].source = "\n".join(lines[: cuts[0]])
    for start, end in reversed(list(zip(cuts, [cuts[1], len(lines)]))):
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(lines[start:end])))


def _indented_scratch_after_answer(nb):
    nb.cells.insert(_cell(nb, "decompose_weight") + 1, nbformat.v4.new_code_cell("  print('checking')"))


def _note_after_written_answer(nb):
    nb.cells.insert(_cell(nb, "ex3_written_answer") + 1, nbformat.v4.new_markdown_cell("(see also my plot)"))


V2 = "# second version"


def _edited_copy(nb):
    copied = copy.deepcopy(nb.cells[_cell(nb, "decompose_weight")])  # pasted, then changed a little
    copied.source += f"\n{V2}"
    return copied


def _edited_copy_below_test(nb):
    nb.cells.insert(_cell(nb, "decompose_weight_matches_definition") + 1, _edited_copy(nb))


def _edited_copy_above_test(nb):
    nb.cells.insert(_cell(nb, "decompose_weight") + 1, _edited_copy(nb))


def _merge_three(nb):
    index = _cell(nb, "decompose_weight")  # JupyterLab: select answer, test and the text below, Shift-M
    nb.cells[index].source = "\n\n".join(cell.source for cell in nb.cells[index : index + 3])
    del nb.cells[index + 1 : index + 3]


def _windows_line_endings(nb):
    for cell in nb.cells:
        cell.source = cell.source.replace("\n", "  \r\n")


def _unknown_grade_id(nb):
    cell = nbformat.v4.new_code_cell("print('from another notebook')")
    cell.metadata["nbgrader"] = {"grade_id": "other_notebook_cell", "solution": True, "grade": False, "locked": False}
    nb.cells.insert(3, cell)


VERSIONS = (
    "answer decompose_weight defined in 2 cells, the last one above its test graded, the others kept as plain cells"
)


@dataclass(frozen=True)
class Case:
    """A notebook honest or not, made from the perfect one, and what `tidy` must make of it."""

    name: str
    change: Callable[[nbformat.NotebookNode], None]
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    graded: str = ""  # text the graded decompose_weight answer contains
    not_graded: str = ""  # text it must not contain
    plain: str = ""  # text one of the plain (added) code cells contains
    changed: tuple[str, ...] = ()  # answers that differ from the perfect notebook's (all others must not)


EDGE_CASES = [
    Case(
        "answer_deleted",
        _answer_deleted,
        ["answer decompose_weight not found, graded as unanswered"],
        ["decompose_weight"],
        graded="raise NotImplementedError()",
        changed=("decompose_weight",),
    ),
    Case("test_edited", _test_edited, ["edited test cell decompose_weight_matches_definition restored"]),
    Case("test_deleted", _test_deleted, ["deleted test cell decompose_weight_matches_definition restored"]),
    Case("markdown_moved", _markdown_moved_to_end, ["instructor cell ex1_real_intro moved back into place"]),
    Case(
        "answer_in_new_cell",
        _answer_in_new_cell,
        ["answer decompose_weight found by content (nbgrader metadata missing)"],
        graded="torch.linalg.vector_norm",
    ),
    Case("edited_copy_below_test", _edited_copy_below_test, [VERSIONS], not_graded=V2, plain=V2),
    Case(
        "edited_copy_above_test",
        _edited_copy_above_test,
        [VERSIONS],
        graded=V2,
        plain="def decompose_weight",
        changed=("decompose_weight",),
    ),
    Case(
        "merge_three_cells",
        _merge_three,
        [
            "test cell decompose_weight_matches_definition separated from a merged cell",
            "instructor cell ex1_real_intro separated from a merged cell",
        ],
    ),
    Case("split_in_three_vscode", _split_in_three_vscode, ["answer decompose_weight split over 3 cells, joined"]),
    # Indented, but it would break the answer: a scratch cell of its own (it fails alone, as it did in the notebook).
    Case("indented_scratch_after_answer", _indented_scratch_after_answer, plain="print('checking')"),
    # Markdown after a written answer continues it (VS Code and Colab drop a split part's metadata): joined.
    Case(
        "note_after_written_answer",
        _note_after_written_answer,
        ["answer ex3_written_answer split over 2 cells, joined"],
        changed=("ex3_written_answer",),
    ),
    Case("windows_line_endings", _windows_line_endings),
    Case("unknown_grade_id", _unknown_grade_id, plain="from another notebook"),
]


@pytest.mark.parametrize("case", EDGE_CASES, ids=[case.name for case in EDGE_CASES])
def test_edge_case(case, course, filled):
    notebook = copy.deepcopy(filled["perfect"])
    case.change(notebook)
    tidied = tidy(notebook, course["release"])
    assert (tidied.notes, tidied.missing) == (case.notes, case.missing)
    assert case.graded in tidied.answers["decompose_weight"]
    assert not case.not_graded or case.not_graded not in tidied.answers["decompose_weight"]
    assert not case.plain or any(case.plain in code for code in tidied.added_code)
    perfect = {
        cell.metadata.nbgrader.grade_id: cell.source
        for cell in filled["perfect"].cells
        if cell.metadata.nbgrader.get("solution")
    }
    assert {g: _squash(text) for g, text in tidied.answers.items() if g not in case.changed} == {
        g: _squash(text) for g, text in perfect.items() if g not in case.changed
    }
    instructor = [cell for cell in course["release"].cells if not cell.metadata.nbgrader.get("solution")]
    kept = [cell for cell in tidied.notebook.cells if cell.metadata.get("nbgrader", {}).get("solution") is False]
    assert [cell.source for cell in kept] == [cell.source for cell in instructor]
    nbformat.validate(tidied.notebook)
    assert nbgrader_sanitize(tidied.notebook, course["db_url"]) == nbgrader_sanitize(
        filled["perfect"], course["db_url"]
    )
