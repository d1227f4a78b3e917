"""Time `dora-lab grade` on a sample class, serially and with --jobs N, side by side; print the ratio.

    LAB_FAST=1 LAB_DATA_DIR=../shared/data/sst2 .venv/bin/python scripts/bench_grading.py [--students 10] [--jobs 2]

The class is generated from a fresh nbgrader release of solutions/: it cycles through the instructor's solutions,
Exercises 1-2 only, and the untouched release. Both runs must give identical grades.csv files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from labhelpers.course import SOURCE_NOTEBOOK
from labhelpers.grading import GradingOptions, grade
from labhelpers.grading.course import release
from labhelpers.grading.samples import answered, answers_of_exercises, perfect, write_submission


def make_class(folder: Path, source_path: Path, students: int) -> None:
    course = folder / "course"
    (course / "solutions" / "dora").mkdir(parents=True)
    (course / "solutions" / "dora" / "dora_lab.ipynb").write_bytes(source_path.read_bytes())
    student = nbformat.read(release(course), as_version=4)
    source = nbformat.read(source_path, as_version=4)
    kinds = {
        "complete": perfect(student, source),
        "exercises_1_2": answered(student, answers_of_exercises(source, {1, 2})),
        "untouched": student,
    }
    for index in range(students):
        kind = list(kinds)[index % len(kinds)]
        write_submission(folder / "submissions", f"{kind}_{index:02d}", kinds[kind])


def per_submission(graded: Path, total: float, students: int) -> None:
    """Print each kind's seconds in the worker (median) and the run's set-up share, from status.json."""
    statuses = json.loads((graded / "status.json").read_text())
    worked = sum(entry.get("seconds", 0) for entry in statuses.values())
    setup = max(0.0, total - worked)
    print(
        f"  set-up and hand-over (run time minus the workers' time): {setup:.1f} s, {setup / students:.1f} s per submission"
    )
    for kind in ("complete", "exercises_1_2", "untouched"):
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
            f"  {kind:14} {seconds:5.1f} s in the worker ({steps}); with its set-up share {seconds + setup / students:5.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--source", type=Path, default=SOURCE_NOTEBOOK, help="nbgrader source notebook")
    options = parser.parse_args()
    os.environ.setdefault("LAB_FAST", "1")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_class(folder, options.source, options.students)
        seconds, csvs, loads = {}, {}, [os.getloadavg()[0]]
        for jobs in (1, options.jobs):
            started = time.perf_counter()
            path = grade(
                folder / "submissions",
                folder / f"graded-{jobs}",
                GradingOptions(jobs=jobs),
                source_notebook=options.source,
                progress=False,
            )
            seconds[jobs] = time.perf_counter() - started
            csvs[jobs] = path.read_text()
            loads.append(os.getloadavg()[0])
            if jobs == 1:
                print(f"serial run, per submission (median over {options.students}):")
                per_submission(folder / "graded-1", seconds[1], options.students)
    serial, parallel = seconds[1], seconds[options.jobs]
    print(f"{options.students} submissions on {os.cpu_count()} cores")
    print(f"serial:     {serial:7.1f} s  ({serial / options.students:.1f} s per submission)")
    print(f"--jobs {options.jobs}:   {parallel:7.1f} s  ({parallel / options.students:.1f} s per submission)")
    print(f"ratio --jobs {options.jobs} / serial: {parallel / serial:.2f}")
    print(
        f"1-minute load average at start and after each run: {', '.join(f'{load:.1f}' for load in loads)} "
        f"(grading itself adds up to --jobs; more means other processes competed and the ratio is inflated)"
    )
    print("grades identical: " + ("yes" if csvs[1] == csvs[options.jobs] else "NO"))
    if csvs[1] != csvs[options.jobs]:
        serial_rows, parallel_rows = set(csvs[1].splitlines()), set(csvs[options.jobs].splitlines())
        print("serial only:  ", *sorted(serial_rows - parallel_rows), sep="\n  ")
        print(f"--jobs {options.jobs} only:", *sorted(parallel_rows - serial_rows), sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
