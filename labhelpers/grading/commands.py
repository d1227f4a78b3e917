"""The small `dora-lab` commands: status, a grading summary, a sample class."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import nbformat

from labhelpers.assignment import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import release
from labhelpers.grading.samples import perfect, write_submission


def release_is_current() -> bool:
    """Return True when notebooks/ equals a fresh nbgrader release of solutions/ (generated in a temporary folder)."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / SOURCE_NOTEBOOK.relative_to(SOURCE_NOTEBOOK.parents[2])
        target.parent.mkdir(parents=True)
        target.write_bytes(SOURCE_NOTEBOOK.read_bytes())
        fresh = release(Path(folder))
        return RELEASE_NOTEBOOK.is_file() and fresh.read_bytes() == RELEASE_NOTEBOOK.read_bytes()


def summary(grades_csv: Path) -> str:
    """Return a few lines about a grades.csv: how many students, mean score, who needs a look."""
    with open(grades_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return "no submissions"
    scores = [float(row["score"]) for row in rows]
    unusual = [f"  {row['student_id']}: {row['status']}" for row in rows if row["status"] != "ok"]
    lines = [f"{len(rows)} submissions, mean {sum(scores) / len(scores):.2f} / {rows[0]['max_score']}"]
    if unusual:
        lines += ["look at:", *unusual]
    return "\n".join(lines)


def status(out_dir: Path | None) -> str:
    """Say whether the release is current and, given a grading folder, summarise its grades."""
    lines = [
        f"release {RELEASE_NOTEBOOK}: "
        + ("up to date" if release_is_current() else "OUT OF DATE: run `dora-lab release`")
    ]
    if out_dir is not None:
        grades = out_dir / "grades.csv"
        lines.append(
            summary(grades)
            if grades.is_file()
            else f"{grades} does not exist: run `dora-lab grade ... --out {out_dir}`"
        )
    return "\n".join(lines)


def sample_class(folder: Path) -> Path:
    """Write two sample submissions from the release: `solution` (the instructor's answers) and `untouched`."""
    source = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    student = nbformat.read(RELEASE_NOTEBOOK, as_version=4)
    write_submission(folder, "solution", perfect(student, source))
    write_submission(folder, "untouched", student)
    return folder
