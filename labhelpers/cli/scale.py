"""`dora-lab`'s commands for a whole class: its report, merging the shards of a class graded on several machines,
the options that choose what `grade` grades (a shard, some students, some tests) and `export`'s LMS layouts.

Like the rest of labhelpers.cli, builders declare options and runners import the package only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LMS_FORMATS = ("lab", "canvas", "moodle")


def add_selection_options(grade: argparse.ArgumentParser) -> None:
    """Add --student, --only, --shard and --secret to `dora-lab grade`."""
    grade.add_argument(
        "--student", nargs="+", default=[], metavar="ID",
        help="regrade just these students (their folder names), whether or not anything changed; the others' grades "
        "stay as they are",
    )  # fmt: skip
    grade.add_argument(
        "--only", nargs="+", default=[], metavar="GRADE_ID",
        help="regrade just these tests (e.g. after fixing a judge) of submissions graded before: their probes and "
        "judges run again, the notebook's run, the other tests and the manual grades are kept",
    )  # fmt: skip
    grade.add_argument(
        "--shard", metavar="i/N",
        help="grade only part i of N of the class (0 <= i < N, a stable split by student id) into OUT_DIR, for one "
        "machine of N; then `dora-lab merge` the N folders. Every shard needs the same --secret",
    )  # fmt: skip
    grade.add_argument(
        "--secret", type=Path, metavar="FILE",
        help="the course's secret (the hidden inputs' seeds): a grading_secret file, e.g. made once with "
        "`openssl rand -hex 32`, or the folder of a shard graded before",
    )  # fmt: skip


def selection_from(options: argparse.Namespace):
    """Return (the Selection, the secret file or None) that `dora-lab grade`'s options ask for."""
    from labhelpers.grading.selection import Selection, parse_shard

    shard = parse_shard(options.shard) if options.shard else None
    return Selection(shard, tuple(options.student), tuple(options.only)), options.secret


def add_lms_options(export: argparse.ArgumentParser) -> None:
    """Add the LMS layouts' options to `dora-lab export`."""
    export.add_argument(
        "--format", choices=LMS_FORMATS, default="lab",
        help="lab: grades.csv (default); canvas: Canvas's gradebook import; moodle: Moodle's CSV grade import "
        "(both need --roster)",
    )  # fmt: skip
    export.add_argument(
        "--roster", type=Path, metavar="CSV",
        help="maps hub user names to the LMS's students: a CSV with a hub_id column (TLJH's jupyter-<name> matches "
        "<name>) beside Canvas's Student, ID, SIS User ID, SIS Login ID, Section, or Moodle's idnumber or email",
    )  # fmt: skip
    export.add_argument("--roster-hub-column", default="hub_id", metavar="COLUMN", help="default hub_id")
    export.add_argument("--assignment", default="DoRA Lab", help="the LMS's assignment (grade item) name")
    export.add_argument("--assignment-id", default="", metavar="ID", help="Canvas's assignment id (its URL's number)")
    export.add_argument("--moodle-id", choices=("idnumber", "email"), help="Moodle's user identifier column")


def export_for_lms(options: argparse.Namespace) -> None:
    """Write OUT_DIR's grades in an LMS's import layout; list the students left out on stderr and in a file."""
    from labhelpers.errors import LabGradingError
    from labhelpers.grading.export import grade_rows
    from labhelpers.grading.lms import LmsOptions, export_lms

    if options.roster is None:
        raise LabGradingError(f"--format {options.format} needs --roster CSV, which maps hub user names to the LMS's")
    out_dir = options.out.resolve()
    lms = LmsOptions(
        options.format, options.roster, options.assignment, options.assignment_id, options.roster_hub_column,
        options.moodle_id or "",
    )  # fmt: skip
    _, rows = grade_rows(out_dir)
    result = export_lms(rows, lms, options.csv or out_dir / f"{options.format}.csv")
    for line in result.problems():
        print(f"dora-lab export: {line}", file=sys.stderr)
    print(f"wrote {result.path} ({result.written} students) and {result.unmatched_path}")


def add_report(commands) -> None:
    report = commands.add_parser(
        "report", help="write OUT_DIR/report.html and report.json: scores, pass rate per test, named mistakes, "
        "statuses, time per phase",
    )  # fmt: skip
    report.add_argument("out", type=Path, metavar="OUT_DIR")
    report.add_argument("--dest", type=Path, metavar="DIR", help="write them here instead of OUT_DIR")
    report.set_defaults(run=_report)


def _report(options: argparse.Namespace) -> None:
    from labhelpers.grading.report import REPORT_JSON, write_report

    page = write_report(options.out, options.dest)
    print(f"wrote {page} and {page.with_name(REPORT_JSON)}")


def add_merge(commands) -> None:
    merge = commands.add_parser(
        "merge", help="combine the folders of `grade --shard i/N` (every i once) into one class's grading folder",
    )  # fmt: skip
    merge.add_argument("shards", type=Path, nargs="+", metavar="SHARD_DIR")
    merge.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="a new folder")
    merge.set_defaults(run=_merge)


def _merge(options: argparse.Namespace) -> None:
    from labhelpers.grading.merge import merge

    print(merge(options.shards, options.out).summary())


COMMANDS = (add_report, add_merge)
"""The builders of this module's commands (labhelpers/cli/__init__.py lists them after export)."""
