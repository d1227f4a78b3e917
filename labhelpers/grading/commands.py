"""The small `dora-lab` commands: status, a grading summary, a sample class.

Both work from an installed lab, which has no solutions/: they read the course folder they are given (`--course`,
by default the project the lab runs from) and say what they could not do without its source notebook.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labhelpers.assignment import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError
from labhelpers.grading.course import release
from labhelpers.grading.samples import perfect, write_submission

_SOURCE_PART = SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
_RELEASE_PART = RELEASE_NOTEBOOK.relative_to(PROJECT_ROOT)


def course_notebooks(course: Path) -> tuple[Path, Path]:
    """Return the course folder's (source notebook, student release) paths, existing or not."""
    return course / _SOURCE_PART, course / _RELEASE_PART


def _no_source(source: Path) -> str:
    return (
        f"no source notebook at {source} (a lab installed as a package has no solutions/): give the course "
        "folder, the clone holding solutions/, with --course DIR"
    )


def fresh_release(source: Path) -> bytes:
    """Return the student notebook nbgrader generates from `source`, made in a temporary folder (the course is untouched)."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / _SOURCE_PART
        target.parent.mkdir(parents=True)
        target.write_bytes(source.read_bytes())
        return release(Path(folder)).read_bytes()


def release_is_current(course: Path = PROJECT_ROOT) -> bool:
    """Return True when the course's notebooks/ equals a fresh nbgrader release of its solutions/."""
    source, released = course_notebooks(course)
    return released.is_file() and fresh_release(source) == released.read_bytes()


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


def release_status(course: Path = PROJECT_ROOT) -> str:
    """Return one line: is the course's release up to date, or why that cannot be told."""
    source, released = course_notebooks(course)
    if not source.is_file():
        return f"release: cannot tell whether it is up to date: {_no_source(source)}."
    if release_is_current(course):
        return f"release {released}: up to date"
    return f"release {released}: OUT OF DATE: run `dora-lab release --course {course}`"


def status(out_dir: Path | None, course: Path = PROJECT_ROOT) -> str:
    """Say whether the course's release is current and, given a grading folder, summarise its grades."""
    lines = [release_status(course)]
    if out_dir is not None:
        grades = out_dir / "grades.csv"
        lines.append(
            summary(grades)
            if grades.is_file()
            else f"{grades} does not exist: run `dora-lab grade ... --out {out_dir}`"
        )
    return "\n".join(lines)


@dataclass
class SampleClass:
    """What `sample_class` wrote into its folder, and what it could not write and why."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Return the lines `dora-lab sample-class` prints."""
        lines = [f"wrote {path}" for path in self.written]
        return "\n".join(lines + [f"not written: {reason}" for reason in self.missing])


def sample_class(folder: Path, course: Path = PROJECT_ROOT) -> SampleClass:
    """Write sample submissions: `solution` (the instructor's answers) and `untouched` (the release as handed out).

    `untouched` is the course's notebooks/ release (or a fresh one from solutions/ when notebooks/ is missing);
    without the course's source notebook (an installed lab) only `untouched` is written, and the result says so.

    Args:
        folder: where to write <student>/dora_lab.ipynb.
        course: the course folder (solutions/ and notebooks/); the project by default.

    Returns:
        A SampleClass. Raises LabGradingError when the course has neither notebook.
    """
    source, released = course_notebooks(course)
    if not source.is_file() and not released.is_file():
        raise LabGradingError(
            f"nothing to make samples from: neither {released} nor {source} exists. Give the course folder (the "
            "clone holding solutions/) with --course DIR."
        )
    if released.is_file():
        student = nbformat.read(released, as_version=4)
    else:
        student = nbformat.reads(fresh_release(source).decode(), as_version=4)
    samples = SampleClass(folder)
    if source.is_file():
        samples.written.append(write_submission(folder, "solution", perfect(student, nbformat.read(source, 4))))
    else:
        samples.missing.append(f"the `solution` sample: {_no_source(source)}")
    samples.written.append(write_submission(folder, "untouched", student))
    return samples
