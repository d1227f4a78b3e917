"""What every command builder shares: the parser type, the --course option and the options-to-record rule."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from labhelpers.config import PROJECT_ROOT

Commands = argparse._SubParsersAction
"""What `add_subparsers` returns: each builder adds its command to it."""


def course_option() -> argparse.ArgumentParser:
    """Return a parent parser with --course DIR, for the commands that work on a course folder."""
    course = argparse.ArgumentParser(add_help=False)
    course.add_argument(
        "--course",
        type=Path,
        default=PROJECT_ROOT,
        metavar="DIR",
        help="the course folder holding solutions/dora/dora_lab.ipynb (default: this project)",
    )
    return course


def given(options: argparse.Namespace, record: type) -> dict:
    """Return the options given on the command line that are fields of `record`, lists as tuples.

    The record's own defaults stand for the options not given, so that the command line and the package never
    disagree on them (and parsing needs no import of the package).
    """
    values = {}
    for field in dataclasses.fields(record):
        value = getattr(options, field.name, None)
        if value is not None:
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return values
