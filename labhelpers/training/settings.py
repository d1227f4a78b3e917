"""The sizes and hyper-parameters of Exercise 4's comparison: `Settings`, the lab's defaults and learning rates."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from labhelpers.config import SIZES
from labhelpers.errors import LabConfigError

METHODS = ("full", "lora", "dora")
"""Full fine-tuning (every weight and the new head), LoRA and DoRA (rank-8 adapters on query/value, and the head)."""

YOUR_LAYER = "dora_yours"
"""The run of DoRA with your DoRALinear (Exercise 2) in place of PEFT's layer, on the first seed of DoRA."""

LABELS = {"full": "full FT", "lora": "LoRA", "dora": "DoRA", YOUR_LAYER: "DoRA (your layer)"}

# Chosen by `make tune` (`dora-lab tune`, seed 0): one epoch over 4,000 training sentences (the student size then;
# 3,200 now) in batches of 16, AdamW without weight decay, scored on 1,000 *other* sentences of SST-2's train split
# (never on validation). Held-out accuracy, constant schedule | linear decay with 10 % warm-up:
#   full FT  2.5e-5 0.874 | 0.860   5e-5 0.885 | 0.886   1e-4 0.874 | 0.886   2e-4 0.885 | 0.860
#   LoRA     1e-3   0.864 | 0.846   2e-3 0.872 | 0.867   4e-3 0.817 | 0.867   8e-3 0.558 | 0.558
#   DoRA     1e-3   0.865 | 0.846   2e-3 0.877 | 0.868   4e-3 0.867 | 0.866   8e-3 0.693 | 0.835
# Warm-up was not better for every method (LoRA: 0.867 against 0.872), so the schedule stays constant; ties are
# broken by the lower training loss (full FT: 5e-5 over 2e-4). Differences under about 0.01 are within the sampling
# error of 1,000 sentences (binomial SE 0.010-0.011): full FT works anywhere in 2.5e-5 … 2e-4, the adapters need
# rates 20-80x larger. The full table is in README.md ("Choosing the learning rates").
LEARNING_RATES = {"full": 5e-5, "lora": 2e-3, "dora": 2e-3}
SCHEDULE = "constant_with_warmup"
WARMUP_RATIO = 0.0

SCHEDULES = ("linear", "constant_with_warmup")
"""transformers' names: linear warm-up then linear decay to 0, or linear warm-up then constant."""


def schedule_name(schedule: str, warmup_ratio: float) -> str:
    """Name a learning-rate schedule for people: 'constant', 'linear decay, 10 % warm-up', …"""
    shape = {"constant_with_warmup": "constant", "linear": "linear decay"}.get(schedule, schedule)
    return shape if warmup_ratio == 0 else f"{shape}, {100 * warmup_ratio:.0f} % warm-up"


@dataclass(frozen=True)
class Settings:
    """The sizes and hyper-parameters of one comparison: what `default_settings` returns and `run_comparison` uses.

    Attributes:
        methods: any of "full", "lora", "dora", in the order they run.
        seeds: one run per method and seed; a seed fixes the head's init, the adapters' init, the batches and dropout,
            so runs of different methods with the same seed are paired.
        full_seeds: the seeds of full fine-tuning, when it runs fewer than the adapters (it costs the most per run);
            None = seeds.
        learning_rates: AdamW's peak learning rate per method (see LEARNING_RATES).
        schedule: "linear" (warm-up, then linear decay to 0) or "constant_with_warmup", from transformers.
        warmup_ratio: fraction of the optimiser steps spent warming up from 0 to the peak learning rate.
        num_epochs: passes over the training sample.
        batch_size: training sentences per batch.
        n_train: size of the label-stratified training sample (the same for every run); None = all 67,349.
        n_eval: size of the stratified validation sample; None = the whole split (872 sentences).
        checkpoints: weight measurements, evenly spaced over training (4: at 25, 50, 75 and 100 %, as the paper's
            three intermediate steps and final checkpoint of Figure 2).
        data_seed: seed of the training and validation samples.
        eval_batch_size: sentences per evaluation batch.
        dropout: None keeps the model's and the adapters' own dropout (0.1 each); a number sets the probability
            of every dropout layer of every run to it (0.0: no dropout).
        gradient_steps: optimiser steps of Exercise 3's gradient run (gradients.gradient_norms_during_training).
    """

    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    full_seeds: tuple[int, ...] | None = None
    learning_rates: Mapping[str, float] = field(default_factory=lambda: dict(LEARNING_RATES))
    schedule: str = SCHEDULE
    warmup_ratio: float = WARMUP_RATIO
    num_epochs: int = 1
    batch_size: int = 16
    n_train: int | None = 3200
    n_eval: int | None = None
    checkpoints: int = 4
    data_seed: int = 0
    eval_batch_size: int = 128
    dropout: float | None = None
    gradient_steps: int = 150

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.full_seeds is not None:
            object.__setattr__(self, "full_seeds", tuple(int(s) for s in self.full_seeds))
        object.__setattr__(self, "learning_rates", {m: float(v) for m, v in dict(self.learning_rates).items()})
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise LabConfigError(f"methods={self.methods!r}: use each of {', '.join(METHODS)} at most once.")
        if not self.seeds or self.full_seeds == ():
            raise LabConfigError("seeds and full_seeds need at least one seed each, e.g. seeds=(0,).")
        missing = [m for m in self.methods if not (self.learning_rates.get(m, 0) > 0)]
        if missing:
            raise LabConfigError(
                f"learning_rates={self.learning_rates!r} has no positive learning rate for {', '.join(missing)}: "
                f"give one per method, e.g. {LEARNING_RATES!r}."
            )
        if self.schedule not in SCHEDULES:
            raise LabConfigError(f"schedule={self.schedule!r}: use one of {', '.join(SCHEDULES)}.")
        if not 0 <= self.warmup_ratio < 1:
            raise LabConfigError(f"warmup_ratio={self.warmup_ratio}: use a fraction in [0, 1), e.g. 0.1.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise LabConfigError(f"dropout={self.dropout}: use a probability in [0, 1), or None for the model's own.")
        for name in ("num_epochs", "batch_size", "checkpoints", "eval_batch_size", "gradient_steps"):
            if getattr(self, name) < 1:
                raise LabConfigError(f"{name}={getattr(self, name)} must be at least 1.")

    def to_json(self) -> dict:
        """Return every setting as JSON data (what ex4_results.json keeps under "settings")."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: Mapping) -> Settings:
        """Rebuild Settings from to_json's data (fields it does not know are refused by name)."""
        return cls(**data)

    def seeds_of(self, method: str) -> tuple[int, ...]:
        """Return the seeds `method` runs with (full_seeds for full fine-tuning, when set)."""
        return self.full_seeds if method == "full" and self.full_seeds is not None else self.seeds

    def steps(self, n_train: int) -> int:
        """Return the number of optimiser steps of one run over `n_train` sentences."""
        return self.num_epochs * math.ceil(n_train / self.batch_size)

    def __str__(self) -> str:
        rates = ", ".join(f"{LABELS[m]} {self.learning_rates[m]:g}" for m in self.methods)
        sentences = "all" if self.n_train is None else f"{self.n_train:,}"
        steps = "" if self.n_train is None else f" ({self.steps(self.n_train)} steps)"
        fractions = ", ".join(f"{100 * k / self.checkpoints:.0f}" for k in range(1, self.checkpoints + 1))
        validation = "all 872" if self.n_eval is None else f"{self.n_eval}"
        dropout = (
            "the model's and the adapters' own (0.1)"
            if self.dropout is None
            else (
                "none (every dropout layer off)" if self.dropout == 0 else f"{self.dropout:g} in every dropout layer"
            )
        )
        full_seeds = ""
        if "full" in self.methods and self.seeds_of("full") != self.seeds:
            full_seeds = f" (full FT: {', '.join(map(str, self.seeds_of('full')))})"
        return (
            f"methods {', '.join(LABELS[m] for m in self.methods)}; seeds {', '.join(map(str, self.seeds))}"
            f"{full_seeds}\n"
            f"{self.num_epochs} epoch(s) over {sentences} training sentences in batches of {self.batch_size}{steps}\n"
            f"AdamW (no weight decay), peak learning rate {rates}; schedule: "
            f"{schedule_name(self.schedule, self.warmup_ratio)}; dropout: {dropout}\n"
            f"weights measured at {fractions} % of training; validation on {validation} sentences"
        )


def default_settings(size: bool | str) -> Settings:
    """Return the lab's sizes: the student size, the LAB_FAST size (seconds) for CI and grading, or the longer run.

    Args:
        size: LabConfig.size ("student", "fast" or "long"), or LabConfig.fast (True for "fast", False for "student").

    Returns:
        The Settings of the comparison and of Exercise 3's gradient run.
    """
    if isinstance(size, bool):
        size = "fast" if size else "student"
    if size not in SIZES:
        raise LabConfigError(f"size={size!r}: use one of {', '.join(SIZES)} (LAB_SIZE).")
    if size == "fast":
        return Settings(seeds=(0,), n_train=64, n_eval=32, gradient_steps=20)
    if size == "long":
        # Optional (LAB_SIZE=long): five times the steps (one epoch over 16,000 sentences, 1,000 steps), linear decay
        # after a 10 % warm-up, no dropout, and every seed for full fine-tuning too; its CPU time is in README.md.
        return Settings(n_train=16000, schedule="linear", warmup_ratio=0.1, dropout=0.0, gradient_steps=100)
    # Three seeds of LoRA and DoRA and one of full fine-tuning (a full fine-tuning run costs about 1.3 LoRA runs), and
    # DoRA once more with the student's layer: one epoch over 3,200 sentences (200 steps), the whole validation split.
    # The comparison took 348 s and the whole notebook 6 min 19 s on an idle 2-core CPU (runs of 52 s full FT, 40 s
    # LoRA, 45 s DoRA, 37 s the student's layer); all three seeds of full fine-tuning would add under 2 minutes.
    return Settings(full_seeds=(0,), gradient_steps=100)
