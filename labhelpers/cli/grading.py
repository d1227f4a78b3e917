"""Grading a class: grade, feedback, export, formgrade (manual grades), deadline and backup."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.cli.common import Commands, course_option
from labhelpers.cli.scale import add_lms_options, add_selection_options, export_for_lms, selection_from
from labhelpers.config import PROJECT_ROOT


def add_grade(commands: Commands) -> None:
    grade = commands.add_parser(
        "grade",
        parents=[course_option()],
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
    grade.add_argument(
        "--run-notebooks",
        action="store_true",
        help="also run each whole notebook in a sandboxed kernel so that its feedback page shows that run's outputs "
        "(about three times the grading time; the same grades). Default: the grader tests the definitions only, and "
        "the feedback page shows the code and the verdicts without outputs",
    )
    add_selection_options(grade)
    grade.add_argument(
        "--no-sandbox",
        action="store_true",
        help="last resort where bubblewrap cannot isolate: run student code with the resource limits only (it can "
        "read and change what the grader can); every status and feedback page says so",
    )
    grade.set_defaults(run=_grade)


def _grade(options: argparse.Namespace) -> None:
    from labhelpers import grading
    from labhelpers.grading import commands

    limits = grading.GradingOptions(
        jobs=options.jobs,
        timeout_cell=options.timeout_cell,
        timeout_submission=options.timeout_submission,
        memory_bytes=int(options.memory_gb * 2**30),
        sandbox=not options.no_sandbox,
        run_notebooks=options.run_notebooks,
    )
    if options.no_sandbox:
        from labhelpers.grading.sandbox import unsandboxed_status

        print(f"dora-lab grade: no sandbox, as asked; each status will read: {unsandboxed_status()}", file=sys.stderr)
    source = options.course / SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
    selection, secret = selection_from(options)
    path = grading.grade(
        options.submissions, options.out, limits, source_notebook=source, progress=not options.quiet,
        selection=selection, secret=secret,
    )  # fmt: skip
    print(commands.summary(path))
    print(f"wrote {path} and {options.out / 'feedback'}/")


def add_feedback(commands: Commands) -> None:
    feedback = commands.add_parser(
        "feedback", help="rebuild OUT_DIR/feedback/ from the gradebook (after manual grading)"
    )
    feedback.add_argument("out", type=Path, metavar="OUT_DIR")
    feedback.set_defaults(run=_feedback)


def _feedback(options: argparse.Namespace) -> None:
    from labhelpers import grading

    grading.regenerate_feedback(options.out)
    print(f"wrote {options.out / 'feedback'}/")


def add_export(commands: Commands) -> None:
    export = commands.add_parser("export", help="write grades.csv from OUT_DIR's gradebook")
    export.add_argument("out", type=Path, metavar="OUT_DIR")
    export.add_argument("--csv", type=Path, help="where to write it (default OUT_DIR/grades.csv, OUT_DIR/FORMAT.csv)")
    add_lms_options(export)
    export.set_defaults(run=_export)


def _export(options: argparse.Namespace) -> None:
    from labhelpers import grading

    if options.format != "lab":
        return export_for_lms(options)
    print(f"wrote {grading.write_grades_csv(options.out.resolve(), options.csv)}")


def add_formgrade(commands: Commands) -> None:
    formgrade = commands.add_parser(
        "formgrade", help="grade written answers by hand: nbgrader's formgrader on OUT_DIR (Autograde refused there)"
    )
    formgrade.add_argument("out", type=Path, metavar="OUT_DIR")
    formgrade.add_argument("--port", type=int, default=8899, help="default 8899 (or the next free one)")
    formgrade.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    formgrade.set_defaults(run=_formgrade)


def _formgrade(options: argparse.Namespace) -> None:
    from labhelpers.grading.formgrade import Formgrader, serve

    serve(Formgrader(options.out, options.ip, options.port))


def add_deadline(commands: Commands) -> None:
    deadline = commands.add_parser(
        "deadline",
        parents=[course_option()],
        help="set or show OUT_DIR's due date, extensions and late penalty (nbgrader's gradebook)",
        description="Late policy: each day or part of a day after the due date plus the student's extension takes "
        "--penalty-per-day percent of the score (default 10), at most all of it. Times are nbgrader's timestamp.txt.",
    )
    deadline.add_argument("out", type=Path, metavar="OUT_DIR")
    deadline.add_argument("--due", metavar="WHEN", help="ISO 8601 with its time zone, e.g. 2026-03-02T17:00+01:00")
    deadline.add_argument("--penalty-per-day", type=float, metavar="PERCENT", help="percent of the score per day late")
    deadline.add_argument(
        "--extend", nargs=2, action="append", default=[], metavar=("STUDENT", "HOURS"),
        help="give STUDENT HOURS more (replaces their extension; 0 removes it); repeat for several",
    )  # fmt: skip
    deadline.set_defaults(run=_deadline)


def _deadline(options: argparse.Namespace) -> None:
    from labhelpers.grading import deadlines

    extensions = deadlines.parse_extensions(options.extend)
    change = deadlines.DeadlineChange(options.due, options.penalty_per_day, extensions)
    source = options.course / SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
    print(deadlines.set_deadline(options.out, change, source).summary())


def add_backup(commands: Commands) -> None:
    backup = commands.add_parser("backup", help="copy OUT_DIR's gradebook.db and grading_secret into DEST")
    backup.add_argument("out", type=Path, metavar="OUT_DIR")
    backup.add_argument("dest", type=Path, metavar="DEST")
    backup.set_defaults(run=_backup)


def _backup(options: argparse.Namespace) -> None:
    from labhelpers.grading.backup import backup

    print("wrote", *backup(options.out, options.dest))
