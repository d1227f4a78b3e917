"""Choosing each method's learning rate on held-out *train* sentences, never on validation (`make tune`).

`tune_learning_rates` trains every method exactly as the comparison does (same training sample, batches, seeds and
loop) at every learning rate of a grid and under every schedule of a `SearchSpace`, and scores each run on sentences
of SST-2's train split that no run trains on. `tune` does the whole job for the command line: it prints the table the
choice was made from and writes it to tune_results.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from labhelpers.checks.finetune import (
    reference_evaluate_accuracy,
    reference_make_peft_model,
    reference_train_one_epoch,
)
from labhelpers.config import LabConfig, get_config
from labhelpers.data import load_sst2, stratified_indices
from labhelpers.errors import LabConfigError
from labhelpers.training import (
    LABELS,
    METHODS,
    LoopFunctions,
    Settings,
    default_settings,
    prepare,
    schedule_name,
    train_run,
)

TUNING_FILE = "tune_results.json"

GRID = {
    "full": (2.5e-5, 5e-5, 1e-4, 2e-4),
    "lora": (1e-3, 2e-3, 4e-3, 8e-3),
    "dora": (1e-3, 2e-3, 4e-3, 8e-3),
}
"""The learning rates tried per method (the table above training.LEARNING_RATES)."""

SCHEDULES = (("constant_with_warmup", 0.0), ("linear", 0.1))
"""(transformers schedule, warm-up ratio) pairs tried: constant, and linear decay after 10 % warm-up; the first is
the baseline that another must beat for every method (Tuning.choose)."""


@dataclass(frozen=True)
class SearchSpace:
    """What a learning-rate search tries, and on how many held-out sentences it scores each run.

    Attributes:
        grid: {method: learning rates to try}.
        schedules: (transformers schedule name, warm-up ratio) pairs; the first is the baseline (see Tuning.choose).
        n_heldout: held-out sentences of the train split.
    """

    grid: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(GRID))
    schedules: Sequence[tuple[str, float]] = SCHEDULES
    n_heldout: int = 1000


def heldout_train_sample(train_set, n: int, data_dir=None, seed: int = 1):
    """Return `n` sentences of SST-2's train split that are not in `train_set`, label-stratified.

    The learning rates are chosen on these, never on the validation split that reports the comparison.

    Args:
        train_set: the training sample (a load_sst2 Dataset with an `idx` column).
        n: sentences to hold out.
        data_dir: SST-2 folder, as for load_sst2.
        seed: sampling seed.

    Returns:
        A Dataset like load_sst2's, disjoint from `train_set`.
    """
    full = load_sst2("train", data_dir=data_dir)
    used = set(train_set["idx"])
    rest = np.asarray([i for i in range(len(full)) if i not in used])
    labels = np.asarray(full["label"])[rest]
    if n > len(rest):
        raise LabConfigError(f"n={n} held-out sentences requested, but only {len(rest)} remain: ask for fewer.")
    return full.select(rest[stratified_indices(labels, n, seed)])


@dataclass(frozen=True)
class TuningRow:
    """One tuning run: a method trained with one schedule, learning rate and seed, scored on held-out train data."""

    method: str
    schedule: str
    warmup_ratio: float
    lr: float
    seed: int
    heldout_accuracy: float
    train_loss: float
    seconds: float


@dataclass
class Tuning:
    """A learning-rate search: every run, and the choice made from them.

    Attributes:
        rows: one per (schedule, method, learning rate, seed).
        n_train, n_heldout: sentences trained on / scored on (held out from the train split).
        chosen_schedule: the (schedule, warm-up ratio) chosen (see choose).
        chosen: {method: learning rate} under the chosen schedule.
    """

    rows: list[TuningRow]
    n_train: int
    n_heldout: int
    chosen_schedule: tuple[str, float] = ("linear", 0.0)
    chosen: dict[str, float] = field(default_factory=dict)

    def _rows(self, method: str, schedule: tuple[str, float], lr: float) -> list[TuningRow]:
        return [
            r for r in self.rows if (r.method, (r.schedule, r.warmup_ratio), r.lr) == (method, tuple(schedule), lr)
        ]

    def mean_accuracy(self, method: str, schedule: tuple[str, float], lr: float) -> float:
        """Return the mean held-out accuracy over seeds of one cell of the table (nan if it was not run)."""
        values = [r.heldout_accuracy for r in self._rows(method, schedule, lr)]
        return float(np.mean(values)) if values else math.nan

    def best(self, method: str, schedule: tuple[str, float]) -> tuple[float, float]:
        """Return (learning rate, mean held-out accuracy) of the best learning rate of `method` under `schedule`.

        Best = highest mean held-out accuracy; on a tie (1,000 sentences give accuracies in steps of 0.001), the
        lower mean final training loss.
        """
        scored = []
        for lr in sorted({r.lr for r in self.rows if r.method == method}):
            rows = self._rows(method, schedule, lr)
            if rows:
                accuracy = float(np.mean([r.heldout_accuracy for r in rows]))
                scored.append((accuracy, -float(np.mean([r.train_loss for r in rows])), lr))
        accuracy, _, lr = max(scored)
        return lr, accuracy

    def choose(self) -> None:
        """Pick each method's best learning rate; keep a warm-up schedule only if it helps every method.

        The schedules are compared at each method's best learning rate: the first schedule listed (the baseline) is
        replaced by another only when that one is at least as good for every method.
        """
        schedules = list(dict.fromkeys((r.schedule, r.warmup_ratio) for r in self.rows))
        methods = list(dict.fromkeys(r.method for r in self.rows))
        chosen = schedules[0]
        for candidate in schedules[1:]:
            if all(self.best(m, candidate)[1] >= self.best(m, chosen)[1] for m in methods):
                chosen = candidate
        self.chosen_schedule = chosen
        self.chosen = {m: self.best(m, chosen)[0] for m in methods}

    def table(self) -> str:
        """Return the table the choice was made from: mean held-out accuracy per schedule, method and rate."""
        seeds = sorted({r.seed for r in self.rows})
        lines = [
            f"Held-out accuracy on {self.n_heldout:,} train-split sentences not trained on (mean over seed"
            f"{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}; {self.n_train:,} training sentences per run)",
            f"{'schedule':<28}{'method':<9}{'lr':>9}  {'accuracy':>8}  {'train loss':>10}  per seed",
        ]
        for schedule in dict.fromkeys((r.schedule, r.warmup_ratio) for r in self.rows):
            for method in dict.fromkeys(r.method for r in self.rows):
                best_lr = self.best(method, schedule)[0]
                for lr in sorted({r.lr for r in self.rows if r.method == method}):
                    rows = self._rows(method, schedule, lr)
                    per_seed = [r.heldout_accuracy for r in rows]
                    loss = float(np.mean([r.train_loss for r in rows]))
                    name = schedule_name(*schedule)
                    lines.append(
                        f"{name:<28}{LABELS[method]:<9}{lr:>9.1e}  {self.mean_accuracy(method, schedule, lr):>8.3f}  "
                        f"{loss:>10.3f}  "
                        f"{' '.join(f'{a:.3f}' for a in per_seed)}{'  <- best' if lr == best_lr else ''}"
                    )
        lines.append(
            f"Chosen: {schedule_name(*self.chosen_schedule)}; "
            + ", ".join(f"{LABELS[m]} {lr:g}" for m, lr in self.chosen.items())
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "n_train": self.n_train, "n_heldout": self.n_heldout,
            "chosen_schedule": list(self.chosen_schedule), "chosen": self.chosen,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }  # fmt: skip


def tune_learning_rates(
    functions: LoopFunctions,
    settings: Settings,
    search: SearchSpace | None = None,
    *,
    base_model: nn.Module | None = None,
    tokenizer=None,
    config: LabConfig | None = None,
    progress: bool = True,
) -> Tuning:
    """Train every method at every learning rate of the grid under every schedule, score each on held-out train data.

    The runs are those of run_comparison (same training sample, batches, seeds and loop), but accuracy is measured
    on `search.n_heldout` sentences of the train split that no run trains on; the validation split is never read.

    Args:
        functions: your loop, as for run_comparison.
        settings: sizes (n_train, batch_size, num_epochs, seeds …); its methods are the ones tuned.
        search: the grid, the schedules and the held-out size; None = SearchSpace().
        base_model, tokenizer, config, progress: as for run_comparison.

    Returns:
        A Tuning with every row and the choice.
    """
    search = search or SearchSpace()

    def heldout(train_set, settings: Settings, data_dir):
        return heldout_train_sample(train_set, search.n_heldout, data_dir=data_dir, seed=settings.data_seed + 1)

    context = prepare(
        functions, settings, heldout, base_model=base_model, tokenizer=tokenizer, config=config, progress=progress
    )
    tuning = Tuning(rows=[], n_train=len(context.train_set), n_heldout=context.n_eval)
    for schedule, warmup_ratio in search.schedules:
        for method in settings.methods:
            for lr in search.grid[method]:
                run_settings = dataclasses.replace(
                    settings, schedule=schedule, warmup_ratio=warmup_ratio,
                    learning_rates={**settings.learning_rates, method: lr},
                )  # fmt: skip
                for seed in settings.seeds_of(method):
                    run = train_run(context, method, seed, run_settings, keep_weights=False, progress=False)
                    tuning.rows.append(
                        TuningRow(method, schedule, warmup_ratio, lr, seed, run.val_accuracy, run.train_loss[-1],
                                  run.seconds)
                    )  # fmt: skip
                    if progress:
                        print(
                            f"{schedule_name(schedule, warmup_ratio):<28}{LABELS[method]:<8} lr {lr:.1e} seed "
                            f"{seed}: held-out accuracy {run.val_accuracy:.3f}, train loss {run.train_loss[-1]:.3f} "
                            f"({run.seconds:.0f} s)",
                            flush=True,
                        )
    tuning.choose()
    return tuning


# ---------------------------------------------------------------------------------------------------------------
# The command line's job (`dora-lab tune`)


@dataclass(frozen=True)
class TuneOptions:
    """What the command line asks of a learning-rate search; the rest are the student size's settings.

    Attributes:
        n_train: training sentences per run (default: the student run's).
        n_heldout: held-out train-split sentences each run is scored on.
        seeds: one run per seed in every cell of the table.
        methods: any of "full", "lora", "dora".
        grid: {method: learning rates to try}; needs every method of `methods`.
        output_dir: folder for tune_results.json; None = LabConfig.output_dir ($LAB_OUTPUT_DIR).
    """

    n_train: int = field(default_factory=lambda: default_settings("student").n_train)
    n_heldout: int = 1000
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = METHODS
    grid: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(GRID))
    output_dir: str | os.PathLike | None = None

    def settings(self) -> Settings:
        """Return the student size's Settings with these methods, seeds and training sentences."""
        return dataclasses.replace(
            default_settings("student"), methods=self.methods, seeds=self.seeds, n_train=self.n_train
        )

    def search(self) -> SearchSpace:
        """Return the grid of these methods (LabConfigError when one has no rates or a rate is not positive)."""
        for method in self.methods:
            rates = tuple(self.grid.get(method, ()))
            if not rates or min(rates) <= 0:
                raise LabConfigError(
                    f"grid[{method!r}]={rates!r}: give {LABELS.get(method, method)} positive learning rates to try, "
                    f"e.g. {GRID.get(method, GRID['lora'])!r}."
                )
        return SearchSpace(grid={m: tuple(self.grid[m]) for m in self.methods}, n_heldout=self.n_heldout)


def tune(options: TuneOptions, progress: bool = True) -> Path:
    """Run the learning-rate search with the lab's reference loop; print its table; write tune_results.json.

    Args:
        options: sizes, seeds, methods, grid and output folder.
        progress: print the plan, one line per run, the table and the file written.

    Returns:
        The path of tune_results.json. Raises LabConfigError or LabDataError on unusable options or data.
    """
    settings, search = options.settings(), options.search()
    if progress:
        print(_plan(settings, search))
    start = time.perf_counter()
    functions = LoopFunctions(reference_make_peft_model, reference_train_one_epoch, reference_evaluate_accuracy)
    tuning = tune_learning_rates(functions, settings, search, progress=progress)
    if progress:
        print(f"\n{tuning.table()}\n({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})")
    folder = Path(get_config().output_dir if options.output_dir is None else options.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TUNING_FILE
    path.write_text(json.dumps(tuning.to_json(), indent=1))
    if progress:
        print(f"Wrote {path}")
    return path


def _plan(settings: Settings, search: SearchSpace) -> str:
    """Say what the search will run: methods, sizes, seeds, schedules, learning rates, threads and machine load."""
    schedules = ", ".join(schedule_name(*schedule) for schedule in search.schedules)
    rates = "; ".join(f"{LABELS[m]} {', '.join(f'{lr:g}' for lr in search.grid[m])}" for m in settings.methods)
    return (
        f"Tuning {', '.join(LABELS[m] for m in settings.methods)} on {settings.n_train:,} training sentences "
        f"({settings.steps(settings.n_train)} steps of {settings.batch_size}), seeds "
        f"{','.join(map(str, settings.seeds))}; scored on {search.n_heldout:,} other train-split sentences.\n"
        f"Schedules: {schedules}. Learning rates: {rates}.\n"
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}.\n"
    )
