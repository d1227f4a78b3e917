"""The course's term: release (to the exchange), collect, return, status and sample-class."""

from __future__ import annotations

import argparse
from pathlib import Path

from labhelpers.cli.common import Commands, course_option


def add_release(commands: Commands) -> None:
    release = commands.add_parser(
        "release",
        parents=[course_option()],
        help="regenerate notebooks/dora/dora_lab.ipynb from solutions/ (nbgrader generate_assignment)",
    )
    release.add_argument(
        "--exchange",
        action="store_true",
        help="then release it to nbgrader's exchange (release_assignment): students fetch it in the Assignments tab",
    )
    release.add_argument("--force", action="store_true", help="with --exchange: replace a release already there")
    release.set_defaults(run=_release)


def _release(options: argparse.Namespace) -> None:
    from labhelpers import grading
    from labhelpers.grading import exchange

    if options.exchange:
        released, warnings = exchange.release_to_exchange(options.course, force=options.force)
        print(*warnings, f"released {released}/: students fetch it from the Assignments tab", sep="\n")
    else:
        print(f"wrote {grading.release(options.course.resolve())}")


def add_collect(commands: Commands) -> None:
    collect = commands.add_parser(
        "collect",
        parents=[course_option()],
        help="copy each student's newest submission from the exchange to COURSE/submitted/ (nbgrader collect)",
    )
    collect.set_defaults(run=_collect)


def _collect(options: argparse.Namespace) -> None:
    from labhelpers.grading import exchange

    print(exchange.collect_submissions(options.course).summary())


def add_return(commands: Commands) -> None:
    returned = commands.add_parser(
        "return", help="release OUT_DIR's feedback to the exchange (nbgrader release_feedback): students fetch it"
    )
    returned.add_argument("out", type=Path, metavar="OUT_DIR")
    returned.set_defaults(run=_return)


def _return(options: argparse.Namespace) -> None:
    from labhelpers.grading import exchange

    print(exchange.return_feedback(options.out).summary())


def add_status(commands: Commands) -> None:
    purpose = "is the release up to date? and, given OUT_DIR, a summary of its grades"
    status = commands.add_parser("status", parents=[course_option()], help=purpose)
    status.add_argument("out", type=Path, nargs="?", metavar="OUT_DIR")
    status.set_defaults(run=_status)


def _status(options: argparse.Namespace) -> None:
    from labhelpers.grading import commands

    print(commands.status(options.out, options.course))


def add_sample_class(commands: Commands) -> None:
    purpose = "write sample submissions (solutions, untouched) to try grading"
    sample = commands.add_parser("sample-class", parents=[course_option()], help=purpose)
    sample.add_argument("folder", type=Path, metavar="SUBMISSIONS_DIR")
    sample.set_defaults(run=_sample_class)


def _sample_class(options: argparse.Namespace) -> None:
    from labhelpers.grading import commands

    print(commands.sample_class(options.folder, options.course).summary())
