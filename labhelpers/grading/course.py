"""The nbgrader course: its settings, the student release, the grade cells and which exercise each belongs to."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from traitlets.config import Config

from labhelpers.config import PROJECT_ROOT
from labhelpers.course import ASSIGNMENT, COURSE_ID, NOTEBOOK, RELEASE_NOTEBOOK, SOURCE_NOTEBOOK  # noqa: F401
from labhelpers.errors import LabGradingError

# nbgrader's sections are `## Exercise N: title` markdown headings; grade cells belong to the last one above them.
_EXERCISE_HEADING = re.compile(r"^##\s+Exercise\s+(\d+)\s*:", re.MULTILINE)


def course_config(root: Path = PROJECT_ROOT, db_path: Path | None = None) -> Config:
    """Return the nbgrader settings of the project's nbgrader_config.py, moved to another course folder if asked.

    Args:
        root: the course folder (holds solutions/ and notebooks/).
        db_path: the gradebook file (default: the one nbgrader_config.py names).

    Returns:
        A traitlets Config for nbgrader's apps and NbGraderAPI.
    """
    from traitlets.config.loader import PyFileConfigLoader

    config_file = PROJECT_ROOT / "nbgrader_config.py"
    if not config_file.is_file():
        raise LabGradingError(f"{config_file} is missing: restore it from git (`git checkout nbgrader_config.py`).")
    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    config.CourseDirectory.root = str(root)
    if db_path is None and Path(root).resolve() != PROJECT_ROOT:
        db_path = Path(root) / "gradebook.db"  # another course folder keeps its own gradebook
    if db_path is not None:
        config.CourseDirectory.db_url = f"sqlite:///{db_path}"
    return config


def venv_bin_on_path() -> None:
    """Put this interpreter's bin/ (the venv) on PATH: nbgrader runs the `alembic` executable for its gradebook."""
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def nbgrader_api(config: Config):
    """Return nbgrader's own Python API (NbGraderAPI) for the course `config` describes."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    venv_bin_on_path()
    # The API checks its exchange folder (JupyterHub hand-out, unused here) at start: any writable one will do.
    config.Exchange.root = tempfile.gettempdir()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def generate_assignment(config: Config, use_database: bool) -> Path:
    """Run nbgrader's generate_assignment on the course's source notebook (outputs cleared, overwriting).

    Args:
        config: the course (see course_config).
        use_database: record the assignment, its cells and checksums in the gradebook (grading needs it).

    Returns:
        The generated student notebook.
    """
    root = Path(config.CourseDirectory.root)
    source = root / config.CourseDirectory.source_directory / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    if not source.is_file():
        raise LabGradingError(f"No source notebook at {source}: the instructor's nbgrader notebook must be there.")
    # nbgrader generate_assignment --no-db: a release needs no gradebook.
    config.GenerateAssignment.no_database = not use_database
    config.SaveCells.enabled = use_database
    result = nbgrader_api(config).generate_assignment(ASSIGNMENT, force=True, create=True)
    if not result["success"]:
        raise LabGradingError(
            f"nbgrader generate_assignment failed on {source}:\n{result.get('log', '')}{result.get('error', '')}"
        )
    return root / config.CourseDirectory.release_directory / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def release(root: Path = PROJECT_ROOT) -> Path:
    """Regenerate the student notebook notebooks/dora/dora_lab.ipynb from solutions/ with nbgrader.

    Args:
        root: the course folder (the project by default).

    Returns:
        The path of the written student notebook.
    """
    return generate_assignment(course_config(root), use_database=False)


@dataclass(frozen=True)
class GradeCell:
    """One graded cell of the source notebook.

    Attributes:
        grade_id: nbgrader's id, e.g. ``decompose_weight_matches_definition``.
        points: its maximum score.
        exercise: the number N of the ``## Exercise N:`` section it is in (0 before the first).
        autograded: True for test code cells, False for manually graded answers.
        source: the instructor's source (test cells keep their hidden tests).
    """

    grade_id: str
    points: float
    exercise: int
    autograded: bool
    source: str


def sections(notebook: nbformat.NotebookNode) -> Iterator[tuple[int, nbformat.NotebookNode]]:
    """Yield (exercise number, cell) for every cell: the N of the last `## Exercise N:` heading above it, 0 before the first."""
    exercise = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = _EXERCISE_HEADING.search(cell.source)
            if found:
                exercise = int(found.group(1))
        yield exercise, cell


def grade_cells(notebook: nbformat.NotebookNode) -> list[GradeCell]:
    """Return the graded cells of an nbgrader source notebook, in order, with their exercise numbers."""
    cells = []
    for exercise, cell in sections(notebook):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cells.append(
                GradeCell(
                    grade_id=meta["grade_id"],
                    points=float(meta.get("points", 0)),
                    exercise=exercise,
                    autograded=cell.cell_type == "code" and not meta.get("solution", False),
                    source=cell.source,
                )
            )
    return cells


def points_by_cell(source: nbformat.NotebookNode) -> dict[str, float]:
    """Return {grade_id: points} of the autograded test cells of an nbgrader source notebook."""
    return {cell.grade_id: cell.points for cell in grade_cells(source) if cell.autograded}


def points_by_exercise(source: nbformat.NotebookNode) -> dict[int, float]:
    """Return {exercise number: autograded points} of an nbgrader source notebook."""
    totals: dict[int, float] = {}
    for cell in grade_cells(source):
        if cell.autograded:
            totals[cell.exercise] = totals.get(cell.exercise, 0.0) + cell.points
    return totals


def setup_sources(notebook: nbformat.NotebookNode) -> list[str]:
    """Return the instructor's code cells before the first exercise (imports, setup()): what every check needs."""
    return [cell.source for exercise, cell in sections(notebook) if exercise == 0 and cell.cell_type == "code"]


def validate(notebook_path: Path, invert: bool = False) -> dict:
    """Run nbgrader's validator on a notebook (executing it here, unsandboxed: instructor notebooks only).

    Args:
        notebook_path: a solutions or release notebook.
        invert: nbgrader validate --invert: report the test cells that pass instead of those that fail.

    Returns:
        nbgrader's Validator.validate dictionary (keys such as ``failed``, ``passed``, ``errors``).
    """
    from nbgrader.validator import Validator

    config = course_config()
    config.Validator.invert = invert
    config.Execute.timeout = 600
    # No warning filter here: this is the students' Validate button, where anything on stderr fails a test cell.
    return Validator(config=config).validate(str(notebook_path))
