"""Choose each method's learning rate on held-out *train* data, never on validation (`make tune`).

Trains full fine-tuning, LoRA and DoRA exactly as the notebook's comparison does (same training sample, batches,
seeds and loop), at every learning rate of a grid and under two schedules (constant, and linear with warm-up), and
scores each run on sentences of SST-2's train split that no run trains on. Prints the table it chose from and writes
it to OUTPUT_DIR/tune_results.json. Copy the chosen values into training.LEARNING_RATES / SCHEDULE / WARMUP_RATIO.

  python scripts/tune.py                                  # the student size: 4,000 sentences, seed 0
  python scripts/tune.py --seeds 0,1                      # two seeds per cell of the table (twice as long)
  python scripts/tune.py --n-train 320 --n-heldout 200    # a quick try
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from labhelpers import training
from labhelpers.checks.finetune import reference_evaluate_accuracy, reference_lora_config, reference_train_one_epoch
from labhelpers.config import get_config
from labhelpers.errors import LabConfigError, LabDataError

GRID = {
    "full": (2.5e-5, 5e-5, 1e-4, 2e-4),
    "lora": (1e-3, 2e-3, 4e-3, 8e-3),
    "dora": (1e-3, 2e-3, 4e-3, 8e-3),
}
SCHEDULES = (("constant_with_warmup", 0.0), ("linear", 0.1))


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 1e-3,2e-3") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: learning rates must be positive")
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = training.default_settings(fast=False)
    parser.add_argument("--n-train", type=int, default=defaults.n_train, help="training sentences per run")
    parser.add_argument("--n-heldout", type=int, default=1000, help="held-out train-split sentences scored")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--methods", default=",".join(training.METHODS), help="comma-separated methods")
    for method, rates in GRID.items():
        parser.add_argument(
            f"--{method}-lr", type=_rates, default=rates, help=f"{method} rates (default {','.join(map(str, rates))})"
        )
    parser.add_argument("--out", default=None, help="folder for tune_results.json (default $LAB_OUTPUT_DIR)")
    args = parser.parse_args(argv)

    try:
        methods = tuple(m for m in args.methods.split(",") if m)
        settings = dataclasses.replace(
            defaults, methods=methods, seeds=tuple(int(s) for s in args.seeds.split(",")), n_train=args.n_train
        )
        grid = {m: getattr(args, f"{m}_lr") for m in methods}
        schedules = ", ".join(training.schedule_name(*schedule) for schedule in SCHEDULES)
        rates = "; ".join(f"{training.LABELS[m]} {', '.join(f'{lr:g}' for lr in grid[m])}" for m in methods)
        print(
            f"Tuning {', '.join(training.LABELS[m] for m in methods)} on {args.n_train:,} training sentences "
            f"({settings.steps(args.n_train)} steps of {settings.batch_size}), seeds {args.seeds}; scored on "
            f"{args.n_heldout:,} other train-split sentences.\nSchedules: {schedules}. Learning rates: {rates}.\n"
            f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}.\n"
        )
        start = time.perf_counter()
        tuning = training.tune_learning_rates(
            reference_lora_config, reference_train_one_epoch, reference_evaluate_accuracy, settings, grid, SCHEDULES,
            n_heldout=args.n_heldout,
        )  # fmt: skip
    except (LabConfigError, LabDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\n{tuning.table()}\n({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})")
    folder = get_config().output_dir if args.out is None else args.out
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, training.TUNING_FILE)
    with open(path, "w") as handle:
        json.dump(tuning.to_json(), handle, indent=1)
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
