"""The nbgrader course: its settings, the student release, the graded copy, the grade cells and their exercises."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from traitlets.config import Config

from labhelpers.assignment import (  # noqa: F401 (the assignment's names, also read from here)
    ASSIGNMENT,
    COURSE_ID,
    NOTEBOOK,
    RELEASE_DIRECTORY,
    RELEASE_NOTEBOOK,
    SOURCE_DIRECTORY,
    SOURCE_NOTEBOOK,
)
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError

SETTINGS_JSON = "nbgrader_config.json"
"""The graded copy's nbgrader settings, as data (traitlets reads nbgrader_config.json beside nbgrader_config.py)."""
SETTINGS_PY = """\
# nbgrader settings of this graded copy (e.g. `nbgrader db student list`, or the formgrader for the written answers):
# the values are in nbgrader_config.json beside this file, which nbgrader reads after this one.
c = get_config()  # noqa: F821
"""
TIDIED = "tidied"
"""The graded copy's folder of submissions rebuilt on the release: what autograde read and the formgrader lists."""
AUTOGRADE_REFUSED = "labhelpers.grading.formgrade.AutogradeRefused"
"""The exporter that nbgrader's own autograde gets in the graded copy: it stops before touching anything."""
FEEDBACK_EXPORTER = "labhelpers.grading.maths.FeedbackExporter"
"""The exporter of every feedback page: nbconvert's HTML with the maths as MathML, no MathJax from a CDN."""
FEEDBACK_PREPROCESSORS = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "labhelpers.grading.feedback.ClearHiddenTestsOfTestCells",
]
"""nbgrader's GenerateFeedback preprocessors, and the hidden tests taken out of the page (nbgrader keeps them)."""

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs"}
    | {"fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse"}
)
"""Filesystem types (/proc/mounts) where SQLite's WAL mode, which the gradebook uses, does not work."""

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
    if config_file.is_file():
        config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    elif (PROJECT_ROOT / "pyproject.toml").is_file():
        raise LabGradingError(f"{config_file} is missing: restore it from git (`git checkout nbgrader_config.py`).")
    else:
        # The lab installed as a package (a hub's environment) has no nbgrader_config.py: its settings, from the
        # same names, here.
        config = Config()
        config.CourseDirectory.course_id = COURSE_ID
        config.CourseDirectory.source_directory = SOURCE_DIRECTORY
        config.CourseDirectory.release_directory = RELEASE_DIRECTORY
    config.CourseDirectory.root = str(root)
    if db_path is None and Path(root).resolve() != PROJECT_ROOT:
        db_path = Path(root) / "gradebook.db"  # another course folder keeps its own gradebook
    if db_path is not None:
        config.CourseDirectory.db_url = f"sqlite:///{db_path}"
    # Feedback pages with their maths as MathML, readable offline (nbgrader's template loads MathJax from a CDN).
    config.GenerateFeedback.exporter_class = FEEDBACK_EXPORTER
    config.GenerateFeedback.preprocessors = FEEDBACK_PREPROCESSORS
    return config


def filesystem_type(path: Path, mounts: str | None = None) -> str:
    """Return the type of the filesystem holding `path` ("" when unknown).

    Args:
        path: a file or folder, existing or not.
        mounts: the mount table in /proc/mounts' format (default: this machine's).

    Returns:
        The type of the longest mount point above `path`, e.g. "ext4" or "nfs4".
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    target, best, kind = str(path.resolve()), "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), fields[1])  # \040 is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of stacked mounts wins, as in the kernel
            best, kind = point, fields[2]
    return kind


def require_local_disk(out_dir: Path) -> None:
    """Refuse a grading folder on a network filesystem, where the gradebook's SQLite WAL mode does not work."""
    kind = filesystem_type(out_dir)
    if kind in NETWORK_FILESYSTEMS:
        raise LabGradingError(
            f"{out_dir} is on a network filesystem ({kind}); the gradebook is SQLite in WAL mode, which SQLite "
            "documents as not working there. Give a folder on a local disk (e.g. /var/tmp/graded) and keep "
            "`dora-lab backup` copies in your home (docs/grading.md)."
        )


def prepare_course(out_dir: Path, source_notebook: Path) -> tuple[Path, Path]:
    """Create OUT_DIR's private nbgrader course (source, release with checksums, gradebook); reuse it when current.

    Args:
        out_dir: the grading folder (created if missing, readable by its owner only).
        source_notebook: the instructor's nbgrader source notebook.

    Returns:
        (the course folder, the gradebook file).
    """
    if not source_notebook.is_file():
        raise LabGradingError(
            f"No instructor notebook at {source_notebook}: grading needs the nbgrader source (solutions/)."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise LabGradingError(f"--out {out_dir} is a file: give a folder (it is created if missing).")
    require_local_disk(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)  # only the grader: the gradebook, the secret and every student's work are in here
    course = out_dir / "course"
    target = course / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    db_path = out_dir / "gradebook.db"
    release = course / RELEASE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    current = target.is_file() and release.is_file() and db_path.is_file()
    if not (current and target.read_bytes() == source_notebook.read_bytes()):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_notebook, target)
        generate_assignment(course_config(course, db_path), use_database=True)
        with sqlite3.connect(db_path) as connection:  # workers write to the gradebook while others read it
            connection.execute("PRAGMA journal_mode=WAL")
    write_course_settings(course, db_path)  # also brings a folder graded by an earlier version up to date
    return course, db_path


def graded_course(out_dir: Path) -> tuple[Path, Path]:
    """Return (course folder, gradebook) of a grading folder `dora-lab grade` wrote; say what to do when it is not one.

    Args:
        out_dir: the grading folder (OUT_DIR of `dora-lab grade`).

    Returns:
        (OUT_DIR/course, OUT_DIR/gradebook.db).
    """
    course, db_path = out_dir / "course", out_dir / "gradebook.db"
    if not (course / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb").is_file() or not db_path.is_file():
        raise LabGradingError(
            f"{out_dir} is not a grading folder (no course/ and gradebook.db): run "
            f"`dora-lab grade SUBMISSIONS_DIR --out {out_dir}` first."
        )
    require_local_disk(out_dir)
    return course, db_path


def read_course_settings(course: Path) -> dict:
    """Return the graded copy's nbgrader settings (nbgrader_config.json) as a dictionary; {} when there are none."""
    path = course / SETTINGS_JSON
    try:
        settings = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        settings = {}
    return settings if isinstance(settings, dict) else {}


def write_course_settings(course: Path, db_path: Path, extra: dict | None = None) -> Path:
    """Write the graded copy's nbgrader settings, so that nbgrader's own commands and its formgrader work there.

    The values go to nbgrader_config.json, written by json.dump (a path of any characters stays a valid string);
    nbgrader_config.py beside it is always the same text (nbgrader warns when a folder has none). Submissions are
    the tidied ones, and nbgrader's own autograde is refused: it would run student code unsandboxed and replace the
    judge's scores. Sections this function does not own (the late-penalty policy) are kept.

    Args:
        course: the graded copy's course folder.
        db_path: its gradebook.
        extra: sections to set besides, e.g. {"PenaltyPerDay": {"percent_per_day": 10}}.

    Returns:
        The path of nbgrader_config.json.
    """
    settings = {
        **read_course_settings(course),
        "CourseDirectory": {
            "root": str(course),
            "course_id": COURSE_ID,
            "source_directory": SOURCE_DIRECTORY,
            "release_directory": RELEASE_DIRECTORY,
            "submitted_directory": TIDIED,
            "db_url": f"sqlite:///{db_path}",
        },
        "Autograde": {"exporter_class": AUTOGRADE_REFUSED},
        "GenerateFeedback": {"exporter_class": FEEDBACK_EXPORTER, "preprocessors": FEEDBACK_PREPROCESSORS},
        **(extra or {}),
    }
    path = course / SETTINGS_JSON
    path.write_text(json.dumps(settings, indent=1) + "\n")
    (course / "nbgrader_config.py").write_text(SETTINGS_PY)
    return path


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
