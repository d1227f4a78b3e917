"""`dora-lab`: the instructor's commands (release, collect, grade, feedback, return, export, status, sample-class)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labhelpers.config import PROJECT_ROOT
from labhelpers.course import SOURCE_NOTEBOOK
from labhelpers.errors import LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dora-lab",
        description="Release, autograde and return the DoRA lab with nbgrader.",
        epilog="Typical term on a hub (in the course folder, or with --course DIR): dora-lab release --exchange; "
        "dora-lab collect; dora-lab grade submitted/ --out graded/ --jobs 2; "
        "(grade written answers: cd graded/course && nbgrader formgrader; then dora-lab feedback graded/); "
        "dora-lab return graded/; dora-lab export graded/",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    course = argparse.ArgumentParser(add_help=False)
    course.add_argument(
        "--course",
        type=Path,
        default=PROJECT_ROOT,
        metavar="DIR",
        help="the course folder holding solutions/dora/dora_lab.ipynb (default: this project)",
    )
    release = commands.add_parser(
        "release",
        parents=[course],
        help="regenerate notebooks/dora/dora_lab.ipynb from solutions/ (nbgrader generate_assignment)",
    )
    release.add_argument(
        "--exchange",
        action="store_true",
        help="then release it to nbgrader's exchange (release_assignment): students fetch it in the Assignments tab",
    )
    release.add_argument("--force", action="store_true", help="with --exchange: replace a release already there")

    commands.add_parser(
        "collect",
        parents=[course],
        help="copy each student's newest submission from the exchange to COURSE/submitted/ (nbgrader collect)",
    )

    grade = commands.add_parser(
        "grade",
        parents=[course],
        help="autograde SUBMISSIONS_DIR/<student_id>/dora_lab.ipynb (or nbgrader's <student_id>/dora/) in sandboxes",
    )
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

    returned = commands.add_parser(
        "return", help="release OUT_DIR's feedback to the exchange (nbgrader release_feedback): students fetch it"
    )
    returned.add_argument("out", type=Path, metavar="OUT_DIR")

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
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command == "release" and options.force and not options.exchange:
        parser.error("--force replaces a release in the exchange: give it with --exchange")
    from labhelpers.grading.course import venv_bin_on_path

    venv_bin_on_path()
    try:
        _run(options)
    except LabError as error:
        sys.exit(f"dora-lab {options.command}: {error}")


def _run(options: argparse.Namespace) -> None:
    from labhelpers import grading
    from labhelpers.grading import commands, exchange

    if options.command == "release" and options.exchange:
        released, warnings = exchange.release_to_exchange(options.course, force=options.force)
        print(*warnings, f"released {released}/: students fetch it from the Assignments tab", sep="\n")
    elif options.command == "release":
        print(f"wrote {grading.release(options.course.resolve())}")
    elif options.command == "collect":
        print(exchange.collect_submissions(options.course).summary())
    elif options.command == "grade":
        limits = grading.GradingOptions(
            jobs=options.jobs,
            timeout_cell=options.timeout_cell,
            timeout_submission=options.timeout_submission,
            memory_bytes=int(options.memory_gb * 2**30),
        )
        source = options.course / SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
        path = grading.grade(
            options.submissions, options.out, limits, source_notebook=source, progress=not options.quiet
        )
        print(commands.summary(path))
        print(f"wrote {path} and {options.out / 'feedback'}/")
    elif options.command == "feedback":
        grading.regenerate_feedback(options.out)
        print(f"wrote {options.out / 'feedback'}/")
    elif options.command == "return":
        print(exchange.return_feedback(options.out).summary())
    elif options.command == "export":
        print(f"wrote {grading.write_grades_csv(options.out.resolve(), options.csv)}")
    elif options.command == "status":
        print(commands.status(options.out))
    elif options.command == "sample-class":
        print(f"wrote {commands.sample_class(options.folder)}")
