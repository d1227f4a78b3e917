"""Time `dora-lab grade` on a sample class, serially and with --jobs N, side by side (`dora-lab bench-grading`).

The class is generated from a fresh nbgrader release of solutions/: it cycles through the instructor's solutions,
Exercises 1-2 only, and the untouched release. Both runs must give identical grades.csv files.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from labhelpers import grading
from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.errors import LabError
from labhelpers.grading.samples import answered, answers_of_exercises, perfect, write_submission

KINDS = ("complete", "exercises_1_2", "untouched")
"""The kinds of sample submission, in the order the class cycles through them."""


@dataclass(frozen=True)
class GradingBenchOptions:
    """The class to grade and the parallel run to compare with the serial one.

    Attributes:
        students: submissions in the generated class.
        jobs: --jobs of the parallel run.
        source: the nbgrader source notebook the class is released from and graded against.
        kinds: the kinds of submission the class cycles through (KINDS; ("complete",): a class of complete ones).
        run_notebooks: grade with --run-notebooks (each whole notebook run again for its feedback page).
    """

    students: int = 10
    jobs: int = 2
    source: Path = SOURCE_NOTEBOOK
    kinds: tuple[str, ...] = KINDS
    run_notebooks: bool = False

    def __post_init__(self):
        unknown = [kind for kind in self.kinds if kind not in KINDS]
        if unknown or not self.kinds:
            raise LabError(f"kinds={list(self.kinds)}: use one or more of {', '.join(KINDS)}.")


@dataclass(frozen=True)
class GradingBenchResult:
    """The two runs' seconds and whether they gave the same grades.

    Attributes:
        serial_s, parallel_s: seconds of the run with --jobs 1 and with --jobs N.
        identical: both runs wrote the same grades.csv.
    """

    serial_s: float
    parallel_s: float
    identical: bool


def make_class(folder: Path, source_path: Path, students: int, cycle: tuple[str, ...] = KINDS) -> None:
    """Write FOLDER/course (solutions/ only) and FOLDER/submissions/<kind>_<index>/ cycling through `cycle`."""
    course = folder / "course"
    (course / "solutions" / "dora").mkdir(parents=True)
    (course / "solutions" / "dora" / "dora_lab.ipynb").write_bytes(source_path.read_bytes())
    student = nbformat.read(grading.release(course), as_version=4)
    source = nbformat.read(source_path, as_version=4)
    kinds = {
        "complete": perfect(student, source),
        "exercises_1_2": answered(student, answers_of_exercises(source, {1, 2})),
        "untouched": student,
    }
    for index in range(students):
        kind = cycle[index % len(cycle)]
        write_submission(folder / "submissions", f"{kind}_{index:02d}", kinds[kind])


def per_submission(graded: Path, total: float, students: int, jobs: int = 1) -> None:
    """Print each kind's seconds in the worker (median) and the run's set-up share, from status.json.

    With `jobs` workers at once a submission's worker seconds overlap others': its share of the run is its seconds
    divided by `jobs`. nbgrader's autograde of the notebook (its run too, with --run-notebooks) and the probes of one
    submission go on at the same time (their phases overlap too); the feedback phase starts when both are done.
    """
    statuses = json.loads((graded / "status.json").read_text())
    worked = sum(entry.get("seconds", 0) for entry in statuses.values()) / jobs
    setup = max(0.0, total - worked)
    print(
        f"  set-up and hand-over (run time minus the workers' time): {setup:.1f} s, "
        f"{setup / students:.1f} s per submission"
    )
    for kind in KINDS:
        entries = [entry for student, entry in statuses.items() if student.startswith(kind)]
        if not entries:
            continue
        seconds = statistics.median(entry["seconds"] for entry in entries)
        phases = {
            phase: statistics.median(entry["phases"].get(phase, 0) for entry in entries)
            for phase in ("notebook", "probes", "judge", "feedback")
        }
        steps = ", ".join(f"{phase} {value:.1f}" for phase, value in phases.items())
        print(
            f"  {kind:14} {seconds:5.1f} s in the worker ({steps}); "
            f"its share of the run {seconds / jobs + setup / students:5.1f} s"
        )


def bench_grading(options: GradingBenchOptions) -> GradingBenchResult:
    """Grade a generated class serially and with --jobs N; print both times, their ratio and whether grades agree.

    Args:
        options: the class size, N and the source notebook.

    Returns:
        The two runs' seconds and whether their grades.csv files are identical (the differing rows are printed).
    """
    # Grading runs notebooks at the LAB_FAST size; so does every process this run starts, unless told otherwise.
    os.environ.setdefault("LAB_FAST", "1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_class(folder, options.source, options.students, options.kinds)
        seconds, csvs, loads = {}, {}, [os.getloadavg()[0]]
        for jobs in (1, options.jobs):
            started = time.perf_counter()
            path = grading.grade(
                folder / "submissions",
                folder / f"graded-{jobs}",
                grading.GradingOptions(jobs=jobs, run_notebooks=options.run_notebooks),
                source_notebook=options.source,
                progress=False,
            )
            seconds[jobs] = time.perf_counter() - started
            csvs[jobs] = path.read_text()
            loads.append(os.getloadavg()[0])
            print(f"{'serial run' if jobs == 1 else f'--jobs {jobs}'}, per submission (median over each kind):")
            per_submission(folder / f"graded-{jobs}", seconds[jobs], options.students, jobs)
    result = GradingBenchResult(seconds[1], seconds[options.jobs], csvs[1] == csvs[options.jobs])
    _print_comparison(options, result, loads)
    if not result.identical:
        serial_rows, parallel_rows = set(csvs[1].splitlines()), set(csvs[options.jobs].splitlines())
        print("serial only:  ", *sorted(serial_rows - parallel_rows), sep="\n  ")
        print(f"--jobs {options.jobs} only:", *sorted(parallel_rows - serial_rows), sep="\n  ")
    return result


def _print_comparison(options: GradingBenchOptions, result: GradingBenchResult, loads: list[float]) -> None:
    """Print the two runs' times per submission, their ratio, the load average and whether the grades agree."""
    students, jobs, serial, parallel = options.students, options.jobs, result.serial_s, result.parallel_s
    mode = ", each notebook run again (--run-notebooks)" if options.run_notebooks else ""
    print(f"{students} submissions on {os.cpu_count()} cores{mode}")
    print(f"serial:     {serial:7.1f} s  ({serial / students:.1f} s per submission)")
    print(f"--jobs {jobs}:   {parallel:7.1f} s  ({parallel / students:.1f} s per submission)")
    print(f"ratio --jobs {jobs} / serial: {parallel / serial:.2f}")
    print(
        f"1-minute load average at start and after each run: {', '.join(f'{load:.1f}' for load in loads)} "
        f"(grading itself adds up to --jobs; more means other processes competed and the ratio is inflated)"
    )
    print("grades identical: " + ("yes" if result.identical else "NO"))
