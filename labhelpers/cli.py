"""`dora-lab`: the instructor's commands (release, grade, feedback, export, status, sample-class)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labhelpers.errors import LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dora-lab",
        description="Release, autograde and return the DoRA lab with nbgrader.",
        epilog="Typical term: dora-lab release; dora-lab grade submissions/ --out graded/ --jobs 2; "
        "(grade written answers: cd graded/course && nbgrader formgrader); dora-lab feedback graded/; dora-lab export graded/",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "release", help="regenerate notebooks/dora/dora_lab.ipynb from solutions/ (nbgrader generate_assignment)"
    )

    grade = commands.add_parser("grade", help="autograde SUBMISSIONS_DIR/<student_id>/dora_lab.ipynb in sandboxes")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR")
    grade.add_argument(
        "--out", type=Path, required=True, metavar="OUT_DIR", help="grades.csv, feedback/, gradebook.db go here"
    )
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="submissions graded at once (default 1)")
    grade.add_argument("--timeout-cell", type=int, default=120, metavar="S", help="seconds per cell (default 120)")
    grade.add_argument(
        "--timeout-submission", type=int, default=600, metavar="S", help="seconds per submission (default 600)"
    )
    grade.add_argument(
        "--memory-gb", type=float, default=6.0, metavar="GB", help="memory cap per submission (default 6)"
    )
    grade.add_argument("--quiet", action="store_true", help="no progress bar")

    feedback = commands.add_parser(
        "feedback", help="rebuild OUT_DIR/feedback/ from the gradebook (after manual grading)"
    )
    feedback.add_argument("out", type=Path, metavar="OUT_DIR")

    export = commands.add_parser("export", help="write grades.csv from OUT_DIR's gradebook")
    export.add_argument("out", type=Path, metavar="OUT_DIR")
    export.add_argument("--csv", type=Path, help="where to write it (default OUT_DIR/grades.csv)")

    status = commands.add_parser(
        "status", help="is the release up to date? and, given OUT_DIR, a summary of its grades"
    )
    status.add_argument("out", type=Path, nargs="?", metavar="OUT_DIR")

    sample = commands.add_parser("sample-class", help="write sample submissions (solutions, untouched) to try grading")
    sample.add_argument("folder", type=Path, metavar="SUBMISSIONS_DIR")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one `dora-lab` command; exit with a one-line message on errors a user can fix."""
    from labhelpers.grading.course import venv_bin_on_path

    options = _parser().parse_args(argv)
    venv_bin_on_path()
    try:
        _run(options)
    except LabError as error:
        sys.exit(f"dora-lab {options.command}: {error}")


def _run(options: argparse.Namespace) -> None:
    from labhelpers import grading
    from labhelpers.grading import commands

    if options.command == "release":
        print(f"wrote {grading.release()}")
    elif options.command == "grade":
        limits = grading.GradingOptions(
            jobs=options.jobs,
            timeout_cell=options.timeout_cell,
            timeout_submission=options.timeout_submission,
            memory_bytes=int(options.memory_gb * 2**30),
        )
        path = grading.grade(options.submissions, options.out, limits, progress=not options.quiet)
        print(commands.summary(path))
        print(f"wrote {path} and {options.out / 'feedback'}/")
    elif options.command == "feedback":
        grading.regenerate_feedback(options.out)
        print(f"wrote {options.out / 'feedback'}/")
    elif options.command == "export":
        print(f"wrote {grading.write_grades_csv(options.out.resolve(), options.csv)}")
    elif options.command == "status":
        print(commands.status(options.out))
    elif options.command == "sample-class":
        print(f"wrote {commands.sample_class(options.folder)}")
