"""`dora-lab`: one command line for the lab, thin over the package.

The course's term (term.py: release, collect, return, status, sample-class), grading a class (grading.py: grade,
feedback, export, formgrade, deadline, backup; scale.py: report, merge and grade's shard/student/test selection),
and the tools (tools.py: bench, bench-grading, tune, data download). Each command has a builder, which declares its
options, and a runner, which forwards them to the package; the packages are imported when a command runs, so that
`dora-lab --help` imports neither torch nor nbgrader.
"""

from __future__ import annotations

import argparse
import sys

from labhelpers.cli import grading, scale, term, tools
from labhelpers.errors import LabError

COMMANDS = (
    term.add_release,
    term.add_collect,
    grading.add_grade,
    grading.add_feedback,
    term.add_return,
    grading.add_export,
    *scale.COMMANDS,
    grading.add_formgrade,
    grading.add_deadline,
    grading.add_backup,
    term.add_status,
    term.add_sample_class,
    tools.add_bench,
    tools.add_bench_grading,
    tools.add_tune,
    tools.add_data,
)
"""The builders of `dora-lab`'s commands, in the order --help lists them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dora-lab",
        description="Release, autograde and return the DoRA lab with nbgrader; time its layers and its grading; "
        "choose the learning rates; download SST-2.",
        epilog="Typical term on a hub (in the course folder, or with --course DIR): dora-lab release --exchange; "
        "dora-lab collect; dora-lab grade submitted/ --out graded/ --jobs 2; "
        "(grade written answers: dora-lab formgrade graded/; then dora-lab feedback graded/); "
        "dora-lab return graded/; dora-lab export graded/",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
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
        options.run(options)
    except LabError as error:
        sys.exit(f"dora-lab {options.command}: {error}")
