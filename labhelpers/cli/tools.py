"""The lab's tools: the layer and grading benchmarks, the learning-rate search and SST-2's download."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from labhelpers.cli.common import Commands, given


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


def add_bench(commands: Commands) -> None:
    # No defaults here: LabBenchOptions holds them (see common.given), and importing it would import torch.
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

    values = given(options, bench.LabBenchOptions)
    bench.run_lab_bench(bench.LabBenchOptions(**values, input_requires_grad=not options.no_input_grad))


def add_bench_grading(commands: Commands) -> None:
    timing = commands.add_parser(
        "bench-grading", help="time `dora-lab grade` on a sample class, serially and with --jobs N, side by side"
    )
    timing.add_argument("--students", type=int, metavar="N", help="submissions in the sample class (default 10)")
    timing.add_argument("--jobs", type=int, metavar="N", help="--jobs of the parallel run (default 2)")
    timing.add_argument("--source", type=Path, help="nbgrader source notebook (default: the solutions notebook)")
    timing.add_argument(
        "--kinds",
        type=lambda text: tuple(text.split(",")),
        metavar="K,K",
        help="kinds of submission the class cycles through: complete, exercises_1_2, untouched (default: all three)",
    )
    timing.add_argument(
        "--run-notebooks", action="store_true", default=None, help="grade with `dora-lab grade --run-notebooks`"
    )
    timing.set_defaults(run=_bench_grading)


def _bench_grading(options: argparse.Namespace) -> None:
    from labhelpers.bench import parallel_grading

    result = parallel_grading.bench_grading(
        parallel_grading.GradingBenchOptions(**given(options, parallel_grading.GradingBenchOptions))
    )
    if not result.identical:
        sys.exit(1)


def add_data(commands: Commands) -> None:
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


def add_tune(commands: Commands) -> None:
    # No defaults here: TuneOptions holds them (see common.given).
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

    values = given(options, tuning.TuneOptions)
    rates = {method: getattr(options, f"{method}_lr") for method in ("full", "lora", "dora")}
    grid = {**tuning.GRID, **{method: value for method, value in rates.items() if value is not None}}
    if options.out is not None:
        values["output_dir"] = options.out
    tuning.tune(tuning.TuneOptions(**values, grid=grid))
