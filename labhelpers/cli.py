"""`dora-lab`: the instructor's commands (release, collect, grade, formgrade, deadline, feedback, return, export,
backup, status, sample-class; report and merge in labhelpers.cli_class), the benchmarks (bench, bench-grading), the
learning-rate search (tune) and SST-2's download (data download).

Each command has a builder, which declares its options, and a runner, which forwards them to the package; the
packages are imported when a command runs, so that `dora-lab --help` imports neither torch nor nbgrader.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from labhelpers import cli_class
from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabError

Commands = argparse._SubParsersAction
"""What `add_subparsers` returns: each builder adds its command to it."""


def _course_option() -> argparse.ArgumentParser:
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


def _given(options: argparse.Namespace, record: type) -> dict:
    """Return the options given on the command line that are fields of `record`, lists as tuples.

    The record's own defaults stand for the options not given, so that the command line and the package never
    disagree on them (and parsing needs no import of the package).
    """
    given = {}
    for field in dataclasses.fields(record):
        value = getattr(options, field.name, None)
        if value is not None:
            given[field.name] = tuple(value) if isinstance(value, list) else value
    return given


# The grading commands ------------------------------------------------------------------------------------------


def _add_release(commands: Commands) -> None:
    release = commands.add_parser(
        "release",
        parents=[_course_option()],
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


def _add_collect(commands: Commands) -> None:
    collect = commands.add_parser(
        "collect",
        parents=[_course_option()],
        help="copy each student's newest submission from the exchange to COURSE/submitted/ (nbgrader collect)",
    )
    collect.set_defaults(run=_collect)


def _collect(options: argparse.Namespace) -> None:
    from labhelpers.grading import exchange

    print(exchange.collect_submissions(options.course).summary())


def _add_grade(commands: Commands) -> None:
    grade = commands.add_parser(
        "grade",
        parents=[_course_option()],
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
    cli_class.add_selection_options(grade)
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
    )
    if options.no_sandbox:
        from labhelpers.grading.sandbox import unsandboxed_status

        print(f"dora-lab grade: no sandbox, as asked; each status will read: {unsandboxed_status()}", file=sys.stderr)
    source = options.course / SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)
    selection, secret = cli_class.selection_from(options)
    path = grading.grade(
        options.submissions, options.out, limits, source_notebook=source, progress=not options.quiet,
        selection=selection, secret=secret,
    )  # fmt: skip
    print(commands.summary(path))
    print(f"wrote {path} and {options.out / 'feedback'}/")


def _add_feedback(commands: Commands) -> None:
    feedback = commands.add_parser(
        "feedback", help="rebuild OUT_DIR/feedback/ from the gradebook (after manual grading)"
    )
    feedback.add_argument("out", type=Path, metavar="OUT_DIR")
    feedback.set_defaults(run=_feedback)


def _feedback(options: argparse.Namespace) -> None:
    from labhelpers import grading

    grading.regenerate_feedback(options.out)
    print(f"wrote {options.out / 'feedback'}/")


def _add_return(commands: Commands) -> None:
    returned = commands.add_parser(
        "return", help="release OUT_DIR's feedback to the exchange (nbgrader release_feedback): students fetch it"
    )
    returned.add_argument("out", type=Path, metavar="OUT_DIR")
    returned.set_defaults(run=_return)


def _return(options: argparse.Namespace) -> None:
    from labhelpers.grading import exchange

    print(exchange.return_feedback(options.out).summary())


def _add_export(commands: Commands) -> None:
    export = commands.add_parser("export", help="write grades.csv from OUT_DIR's gradebook")
    export.add_argument("out", type=Path, metavar="OUT_DIR")
    export.add_argument("--csv", type=Path, help="where to write it (default OUT_DIR/grades.csv, OUT_DIR/FORMAT.csv)")
    cli_class.add_lms_options(export)
    export.set_defaults(run=_export)


def _export(options: argparse.Namespace) -> None:
    from labhelpers import grading

    if options.format != "lab":
        return cli_class.export_for_lms(options)
    print(f"wrote {grading.write_grades_csv(options.out.resolve(), options.csv)}")


def _add_formgrade(commands: Commands) -> None:
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


def _add_deadline(commands: Commands) -> None:
    deadline = commands.add_parser(
        "deadline",
        parents=[_course_option()],
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


def _add_backup(commands: Commands) -> None:
    backup = commands.add_parser("backup", help="copy OUT_DIR's gradebook.db and grading_secret into DEST")
    backup.add_argument("out", type=Path, metavar="OUT_DIR")
    backup.add_argument("dest", type=Path, metavar="DEST")
    backup.set_defaults(run=_backup)


def _backup(options: argparse.Namespace) -> None:
    from labhelpers.grading.backup import backup

    print("wrote", *backup(options.out, options.dest))


def _add_status(commands: Commands) -> None:
    purpose = "is the release up to date? and, given OUT_DIR, a summary of its grades"
    status = commands.add_parser("status", parents=[_course_option()], help=purpose)
    status.add_argument("out", type=Path, nargs="?", metavar="OUT_DIR")
    status.set_defaults(run=_status)


def _status(options: argparse.Namespace) -> None:
    from labhelpers.grading import commands

    print(commands.status(options.out, options.course))


def _add_sample_class(commands: Commands) -> None:
    purpose = "write sample submissions (solutions, untouched) to try grading"
    sample = commands.add_parser("sample-class", parents=[_course_option()], help=purpose)
    sample.add_argument("folder", type=Path, metavar="SUBMISSIONS_DIR")
    sample.set_defaults(run=_sample_class)


def _sample_class(options: argparse.Namespace) -> None:
    from labhelpers.grading import commands

    print(commands.sample_class(options.folder, options.course).summary())


# The benchmarks and the data -----------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    """Parse OUTxIN into (out_features, in_features)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: write OUTxIN, e.g. 4096x1024")
    return int(match[1]), int(match[2])


def _dropout(text: str) -> float:
    """Parse a lora_dropout probability, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value:g}: a dropout probability is in [0, 1)")
    return value


def _add_bench(commands: Commands) -> None:
    # No defaults here: LabBenchOptions holds them (see _given), and importing it would import torch.
    bench = commands.add_parser(
        "bench", help="time the lab's DoRA layers, PEFT's DoRA and LoRA side by side; print a table and write JSON"
    )
    bench.add_argument("--out", type=Path, help="write the results as JSON to this file")
    bench.add_argument(
        "--solution",
        type=Path,
        help="notebook (.ipynb) or .py file defining DoRALinear and EfficientDoRALinear "
        "(default: the solutions notebook)",
    )
    bench.add_argument("--sizes", nargs="+", type=_size, help="OUTxIN, e.g. 4096x1024")
    bench.add_argument("--tokens", nargs="+", type=int)
    bench.add_argument("--dropouts", nargs="+", type=_dropout, help="lora_dropout values")
    bench.add_argument("--r", type=int)
    bench.add_argument("--lora-alpha", type=float)
    bench.add_argument("--repeats", type=int)
    bench.add_argument("--warmup", type=int)
    bench.add_argument("--threads", type=int, help="CPU threads while timing")
    bench.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        help="wall: elapsed time; cpu: the process's CPU time, not inflated by other processes on a shared "
        "machine (CPU only; use with --threads 1)",
    )
    bench.add_argument("--no-input-grad", action="store_true", help="x does not need a gradient (a first layer)")
    bench.set_defaults(run=_bench)


def _bench(options: argparse.Namespace) -> None:
    from labhelpers import bench

    given = _given(options, bench.LabBenchOptions)
    bench.run_lab_bench(bench.LabBenchOptions(**given, input_requires_grad=not options.no_input_grad))


def _add_bench_grading(commands: Commands) -> None:
    timing = commands.add_parser(
        "bench-grading", help="time `dora-lab grade` on a sample class, serially and with --jobs N, side by side"
    )
    timing.add_argument("--students", type=int, metavar="N", help="submissions in the sample class (default 10)")
    timing.add_argument("--jobs", type=int, metavar="N", help="--jobs of the parallel run (default 2)")
    timing.add_argument("--source", type=Path, help="nbgrader source notebook (default: the solutions notebook)")
    timing.set_defaults(run=_bench_grading)


def _bench_grading(options: argparse.Namespace) -> None:
    from labhelpers.bench import parallel_grading

    result = parallel_grading.bench_grading(
        parallel_grading.GradingBenchOptions(**_given(options, parallel_grading.GradingBenchOptions))
    )
    if not result.identical:
        sys.exit(1)


def _add_data(commands: Commands) -> None:
    data = commands.add_parser("data", help="SST-2: download it from the hub (needs network)")
    actions = data.add_subparsers(dest="action", required=True)
    download = actions.add_parser("download", help="fill DEST with SST-2's train.tsv and validation.tsv")
    download.add_argument("dest", type=Path, nargs="?", metavar="DEST", help="the folder (default: data/sst2)")
    download.set_defaults(run=_data_download)


def _data_download(options: argparse.Namespace) -> None:
    from labhelpers import data

    data.download_sst2(data.PROJECT_DATA_DIR if options.dest is None else options.dest)


def _rates(text: str) -> tuple[float, ...]:
    """Parse comma-separated positive learning rates, e.g. 1e-3,2e-3."""
    try:
        rates = tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 1e-3,2e-3") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: learning rates must be positive")
    return rates


def _numbers(text: str) -> tuple[int, ...]:
    """Parse comma-separated whole numbers, e.g. 0,1."""
    try:
        return tuple(int(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers, e.g. 0,1") from None


def _add_tune(commands: Commands) -> None:
    # No defaults here: TuneOptions holds them (see _given).
    tune = commands.add_parser(
        "tune",
        help="choose each method's learning rate on held-out train-split sentences, never validation (hours on 2 cores)",
        description="Train full fine-tuning, LoRA and DoRA as the notebook's comparison does, at every learning rate "
        "of a grid and under two schedules (constant; linear decay after a 10 % warm-up), and score each run on "
        "sentences of SST-2's train split that no run trains on. Prints the table it chose from and writes "
        "OUTPUT_DIR/tune_results.json; the chosen values go into labhelpers/training/settings.py.",
    )
    tune.add_argument(
        "--n-train", type=int, metavar="N", help="training sentences per run (default: the student size)"
    )
    tune.add_argument(
        "--n-heldout", type=int, metavar="N", help="held-out train-split sentences scored (default 1000)"
    )
    tune.add_argument("--seeds", type=_numbers, metavar="S,…", help="comma-separated seeds (default 0)")
    tune.add_argument(
        "--methods", type=lambda text: tuple(m for m in text.split(",") if m), metavar="M,…",
        help="comma-separated methods among full, lora, dora (default: all three)",
    )  # fmt: skip
    for method in ("full", "lora", "dora"):
        tune.add_argument(f"--{method}-lr", type=_rates, metavar="LR,…", help=f"{method}'s learning rates to try")
    tune.add_argument("--out", type=Path, metavar="DIR", help="folder for tune_results.json (default $LAB_OUTPUT_DIR)")
    tune.set_defaults(run=_tune)


def _tune(options: argparse.Namespace) -> None:
    from labhelpers import tuning

    given = _given(options, tuning.TuneOptions)
    rates = {method: getattr(options, f"{method}_lr") for method in ("full", "lora", "dora")}
    grid = {**tuning.GRID, **{method: value for method, value in rates.items() if value is not None}}
    if options.out is not None:
        given["output_dir"] = options.out
    tuning.tune(tuning.TuneOptions(**given, grid=grid))


COMMANDS = (
    _add_release,
    _add_collect,
    _add_grade,
    _add_feedback,
    _add_return,
    _add_export,
    *cli_class.COMMANDS,
    _add_formgrade,
    _add_deadline,
    _add_backup,
    _add_status,
    _add_sample_class,
    _add_bench,
    _add_bench_grading,
    _add_tune,
    _add_data,
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
