"""Exercise 4: full fine-tuning, LoRA and DoRA run by your training functions, per seed, with checkpoints.

The loop itself (`train_one_epoch`, `evaluate_accuracy`) is the student's: it is passed in, never defined here.
Results travel as typed records (`Settings`, `Run`, `Checkpoint`, `Comparison`, `MethodSummary`,
`PairedDifference`) and are written to `ex4_results.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from labhelpers import analysis
from labhelpers.config import get_config
from labhelpers.data import length_grouped_order, load_sst2, make_dataloader, stratified_indices
from labhelpers.errors import LabConfigError
from labhelpers.models import PACKAGED_MODEL, count_parameters, load_base_model

RESULTS_FILE = "ex4_results.json"
TUNING_FILE = "tune_results.json"

METHODS = ("full", "lora", "dora")
"""Full fine-tuning (every weight and the new head), LoRA and DoRA (rank-8 adapters on query/value, and the head)."""

LABELS = {"full": "full FT", "lora": "LoRA", "dora": "DoRA"}

# Chosen by `make tune` (scripts/tune.py, seed 0): one epoch over the student run's 4,000 training sentences in
# batches of 16, AdamW without weight decay, scored on 1,000 *other* sentences of SST-2's train split (never on
# validation). Held-out accuracy, constant schedule | linear decay with 10 % warm-up:
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


# ---------------------------------------------------------------------------------------------------------------
# Settings


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
        gradient_steps: optimiser steps of Exercise 3's gradient run (analysis.gradient_norms_during_training).
    """

    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    full_seeds: tuple[int, ...] | None = None
    learning_rates: Mapping[str, float] = field(default_factory=lambda: dict(LEARNING_RATES))
    schedule: str = SCHEDULE
    warmup_ratio: float = WARMUP_RATIO
    num_epochs: int = 1
    batch_size: int = 16
    n_train: int | None = 4000
    n_eval: int | None = None
    checkpoints: int = 4
    data_seed: int = 0
    eval_batch_size: int = 128
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
        for name in ("num_epochs", "batch_size", "checkpoints", "eval_batch_size", "gradient_steps"):
            if getattr(self, name) < 1:
                raise LabConfigError(f"{name}={getattr(self, name)} must be at least 1.")

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
        full_seeds = ""
        if "full" in self.methods and self.seeds_of("full") != self.seeds:
            full_seeds = f" (full FT: {', '.join(map(str, self.seeds_of('full')))})"
        return (
            f"methods {', '.join(LABELS[m] for m in self.methods)}; seeds {', '.join(map(str, self.seeds))}"
            f"{full_seeds}\n"
            f"{self.num_epochs} epoch(s) over {sentences} training sentences in batches of {self.batch_size}{steps}\n"
            f"AdamW (no weight decay), peak learning rate {rates}; schedule: "
            f"{schedule_name(self.schedule, self.warmup_ratio)}\n"
            f"weights measured at {fractions} % of training; validation on {validation} sentences"
        )


def default_settings(fast: bool) -> Settings:
    """Return the lab's sizes: the student size, or the LAB_FAST size (seconds) for CI and grading.

    Args:
        fast: LabConfig.fast (`LAB_FAST=1`).

    Returns:
        The Settings of the comparison and of Exercise 3's gradient run.
    """
    if fast:
        return Settings(seeds=(0,), n_train=64, n_eval=32, gradient_steps=20)
    # Three seeds of LoRA and DoRA and one of full fine-tuning (a full fine-tuning run costs about 1.3 LoRA runs),
    # one epoch over 4,000 sentences (250 steps), the whole validation split: the comparison took 529 s and the whole
    # notebook 9 min 37 s on a 2-core CPU (runs of 91 s full FT, 67 s LoRA, 76 s DoRA); all three seeds of full
    # fine-tuning would add 3 minutes.
    return Settings(full_seeds=(0,), gradient_steps=100)


# ---------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class Checkpoint:
    """One run's state after a fraction of its training.

    Attributes:
        step: optimiser steps so far.
        epoch: epochs so far (e.g. 0.25).
        train_loss: mean batch loss since the previous checkpoint.
        decomposition: {layer: (ΔM, ΔD)} of each adapted layer against the pretrained weight (paper §3.2, measured
            with analysis.magnitude_direction_change).
        weights: {layer: (out_features, in_features) float32 CPU tensor}, the merged query/value weights; in memory
            only (about 7 MB per checkpoint), empty when the run did not keep them.
    """

    step: int
    epoch: float
    train_loss: float
    decomposition: dict[str, tuple[float, float]]
    weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


@dataclass
class Run:
    """One method trained with one seed.

    Attributes:
        method, seed, lr: what was trained, and its peak learning rate.
        val_accuracy_per_epoch: your evaluate_accuracy after each epoch.
        train_loss: mean batch loss of each epoch.
        checkpoints: evenly spaced over training.
        trainable_params, total_params: from models.count_parameters.
        train_seconds, eval_seconds: time inside train_one_epoch and evaluate_accuracy.
        lora_config: the PEFT config's main fields, None for full fine-tuning.
    """

    method: str
    seed: int
    lr: float
    val_accuracy_per_epoch: list[float]
    train_loss: list[float]
    checkpoints: list[Checkpoint]
    trainable_params: int
    total_params: int
    train_seconds: float
    eval_seconds: float
    lora_config: dict | None

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last epoch."""
        return self.val_accuracy_per_epoch[-1]

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds

    def to_json(self) -> dict:
        """Return the run as ex4_results.json stores it (no weights)."""
        decomposition = {"step": [], "epoch": [], "layer": [], "delta_m": [], "delta_d": []}
        for checkpoint in self.checkpoints:
            for layer, (delta_m, delta_d) in checkpoint.decomposition.items():
                for key, value in zip(decomposition, (checkpoint.step, checkpoint.epoch, layer, delta_m, delta_d)):
                    decomposition[key].append(value)
        return {
            "method": self.method, "seed": self.seed, "lr": self.lr, "val_accuracy": self.val_accuracy,
            "val_accuracy_per_epoch": self.val_accuracy_per_epoch, "train_loss": self.train_loss,
            "checkpoint_step": [c.step for c in self.checkpoints],
            "checkpoint_epoch": [c.epoch for c in self.checkpoints],
            "checkpoint_train_loss": [c.train_loss for c in self.checkpoints],
            "trainable_params": self.trainable_params, "total_params": self.total_params, "seconds": self.seconds,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "lora_config": self.lora_config,
            "decomposition": decomposition,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> Run:
        """Rebuild a run (without weights) from its ex4_results.json entry."""
        rows = data["decomposition"]
        checkpoints = []
        for step, epoch, loss in zip(data["checkpoint_step"], data["checkpoint_epoch"], data["checkpoint_train_loss"]):
            decomposition = {
                layer: (m, d)
                for s, layer, m, d in zip(rows["step"], rows["layer"], rows["delta_m"], rows["delta_d"])
                if s == step
            }
            checkpoints.append(Checkpoint(step, epoch, loss, decomposition))
        return cls(
            method=data["method"], seed=data["seed"], lr=data["lr"],
            val_accuracy_per_epoch=list(data["val_accuracy_per_epoch"]), train_loss=list(data["train_loss"]),
            checkpoints=checkpoints, trainable_params=data["trainable_params"], total_params=data["total_params"],
            train_seconds=data["train_seconds"], eval_seconds=data["eval_seconds"], lora_config=data["lora_config"],
        )  # fmt: skip


@dataclass
class Comparison:
    """Every run of one comparison, the settings it used, and the pretrained weights it is measured against.

    Attributes:
        settings: the Settings used.
        runs: one Run per method and seed, in the order they ran.
        n_train, n_eval: sentences actually used.
        device: where training ran.
        model: the base model's name.
        torch_threads: torch.get_num_threads() during training.
        pretrained: {layer: (out_features, in_features) float32 CPU tensor}, the reference W0 (in memory only).
        results_file: where ex4_results.json was written, or None.
    """

    settings: Settings
    runs: list[Run]
    n_train: int
    n_eval: int
    device: str
    model: str
    torch_threads: int
    pretrained: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    results_file: Path | None = None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(run.method for run in self.runs))

    def runs_of(self, method: str) -> list[Run]:
        """Return the runs of one method, in seed order."""
        return sorted((run for run in self.runs if run.method == method), key=lambda run: run.seed)

    def to_json(self) -> dict:
        """Return what ex4_results.json holds: {"config": {...}, "runs": [...]} (no weights)."""
        s = self.settings
        config = {
            "methods": list(s.methods), "seeds": list(s.seeds),
            "full_seeds": None if s.full_seeds is None else list(s.full_seeds), "num_epochs": s.num_epochs,
            "learning_rates": dict(s.learning_rates), "schedule": s.schedule, "warmup_ratio": s.warmup_ratio,
            "batch_size": s.batch_size, "n_train": self.n_train, "n_eval": self.n_eval, "checkpoints": s.checkpoints,
            "optimizer": "AdamW(weight_decay=0)", "model": self.model, "device": self.device,
            "torch_threads": self.torch_threads, "data_seed": s.data_seed, "eval_batch_size": s.eval_batch_size,
        }  # fmt: skip
        return {"config": config, "runs": [run.to_json() for run in self.runs]}

    @classmethod
    def from_json(cls, data: Mapping) -> Comparison:
        """Rebuild a comparison (without weights) from a loaded ex4_results.json."""
        c = data["config"]
        settings = Settings(
            methods=c["methods"], seeds=c["seeds"], full_seeds=c.get("full_seeds"),
            learning_rates=c["learning_rates"], schedule=c["schedule"],
            warmup_ratio=c["warmup_ratio"], num_epochs=c["num_epochs"], batch_size=c["batch_size"],
            n_train=c["n_train"], n_eval=c["n_eval"], checkpoints=c["checkpoints"], data_seed=c["data_seed"],
            eval_batch_size=c["eval_batch_size"],
        )  # fmt: skip
        return cls(
            settings=settings, runs=[Run.from_json(r) for r in data["runs"]], n_train=c["n_train"],
            n_eval=c["n_eval"], device=c["device"], model=c["model"], torch_threads=c["torch_threads"],
        )  # fmt: skip

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Write ex4_results.json into `output_dir` (created if missing); return its path."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        self.results_file = path
        return path


# ---------------------------------------------------------------------------------------------------------------
# Devices and batches


class _Batches:
    """Hand `length` batches of an iterable to your function, each moved to `device`, advancing a tqdm bar.

    Your train_one_epoch and evaluate_accuracy call `model(**batch)` as they are: the batches arrive on the
    model's device. Consecutive pieces of one epoch share one iterator over the epoch's DataLoader (the
    sentences are tokenised once per epoch, not once per piece).
    """

    def __init__(self, batches, length: int, device: torch.device, bar=None):
        self.batches, self.length, self.device, self.bar = batches, length, device, bar

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        for batch in itertools.islice(self.batches, self.length):
            yield {key: value.to(self.device) for key, value in batch.items()}
            if self.bar is not None:
                self.bar.update(1)


def _reset_head(model: nn.Module, seed: int) -> None:
    """Draw a new classification head for this seed, with BERT's init (normal(0, initializer_range), zero bias).

    The head is new (not in the checkpoint); without this every seed would share the head drawn at load time.
    """
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        return
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        if head.bias is not None:
            head.bias.zero_()


def _config_summary(config) -> dict:
    targets = config.target_modules
    targets = sorted(targets) if isinstance(targets, (set, list, tuple)) else targets
    return {
        "task_type": str(getattr(config.task_type, "value", config.task_type)),
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": targets,
        "use_dora": bool(config.use_dora),
    }


def _student_number(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabConfigError(
            f"{what} returned {type(value).__name__} {value!r}, not a number: return a Python float."
        ) from None
    if not math.isfinite(number):
        raise LabConfigError(
            f"{what} returned {number}: the loss diverged or nothing was averaged; run its check cell."
        )
    return number


def _lora_config(make_lora_config: Callable[[bool], object], method: str):
    """Return make_lora_config's PEFT config for "lora"/"dora", after checking that it is one."""
    from peft import LoraConfig

    use_dora = method == "dora"
    config = make_lora_config(use_dora)
    if not isinstance(config, LoraConfig):
        raise LabConfigError(
            f"make_lora_config({use_dora}) returned {type(config).__name__}, not a peft.LoraConfig: run its check cell."
        )
    if bool(config.use_dora) != use_dora:
        raise LabConfigError(
            f"make_lora_config({use_dora}) returned use_dora={config.use_dora}: pass the argument on to LoraConfig."
        )
    return config


def _build_model(method: str, seed: int, base_model: nn.Module, lora_config, device: torch.device) -> nn.Module:
    """Return a fresh trainable copy of the base model for one run: every weight for "full", PEFT adapters otherwise."""
    torch.manual_seed(seed)
    model = copy.deepcopy(base_model)
    _reset_head(model, seed)
    if method == "full":
        # Full fine-tuning: every parameter of the encoder (embeddings included), the pooler and the new head.
        model.requires_grad_(True)
    else:
        from peft import get_peft_model

        # get_peft_model freezes the base model, adds the adapters (PEFT's init: lora_B = 0, lora_A from the
        # seeded generator) and, for SEQ_CLS, makes the new classifier trainable.
        model = get_peft_model(model, copy.deepcopy(lora_config))
    return model.to(device)


# ---------------------------------------------------------------------------------------------------------------
# Training


def _segments(batches_per_epoch: int, num_epochs: int, checkpoints: int) -> list[tuple[int, int, int, bool, bool]]:
    """Cut training into pieces that end at a checkpoint or at the end of an epoch.

    Returns:
        [(epoch, first batch, end batch (exclusive) within the epoch, ends at a checkpoint, ends the epoch)].
    """
    total = batches_per_epoch * num_epochs
    # k/checkpoints of the way, rounded half up (integer arithmetic: no float ties).
    marks = {(2 * total * k + checkpoints) // (2 * checkpoints) for k in range(1, checkpoints + 1)}
    ends = sorted(marks | {batches_per_epoch * (e + 1) for e in range(num_epochs)})
    segments, start = [], 0
    for end in ends:
        epoch = start // batches_per_epoch
        offset = epoch * batches_per_epoch
        segments.append((epoch, start - offset, end - offset, end in marks, end % batches_per_epoch == 0))
        start = end
    return segments


def _train_run(
    method: str,
    seed: int,
    lr: float,
    lora_config,
    train_one_epoch: Callable,
    evaluate_accuracy: Callable,
    *,
    settings: Settings,
    base_model: nn.Module,
    tokenizer,
    train_set,
    eval_loader,
    pretrained: Mapping[str, torch.Tensor],
    device: torch.device,
    keep_weights: bool,
    progress: bool,
) -> Run:
    """Train and evaluate one (method, seed) with your functions; return its Run."""
    from transformers import get_scheduler

    model = _build_model(method, seed, base_model, lora_config, device)
    trainable, total = count_parameters(model)
    # No weight decay: decay would pull DoRA's magnitude (and every full fine-tuning weight) towards 0 and show up
    # as a magnitude change in Figure 2. fused=True: one kernel per step over all parameters instead of a dozen
    # passes; for full fine-tuning's 22.7M parameters that is about 70 ms instead of 400-500 ms per step on this
    # lab's 2-core CPU (the same update; negligible for the adapters' 75k).
    trainable_parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable_parameters, lr=lr, weight_decay=0.0, fused=True)
    batches_per_epoch = math.ceil(len(train_set) / settings.batch_size)
    total_steps = batches_per_epoch * settings.num_epochs
    scheduler = get_scheduler(
        settings.schedule, optimizer, num_warmup_steps=round(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )  # fmt: skip
    # Your train_one_epoch calls optimizer.step() once per batch and knows nothing of the schedule: the scheduler
    # advances from the optimiser's own post-step hook (torch.optim.Optimizer.register_step_post_hook).
    steps_taken = [0]

    def advance(*_):
        steps_taken[0] += 1
        if steps_taken[0] <= total_steps:
            scheduler.step()

    optimizer.register_step_post_hook(advance)

    run = Run(
        method=method, seed=seed, lr=lr, val_accuracy_per_epoch=[], train_loss=[], checkpoints=[],
        trainable_params=int(trainable), total_params=int(total), train_seconds=0.0, eval_seconds=0.0,
        lora_config=None if lora_config is None else _config_summary(lora_config),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    lengths = np.array([len(sentence) for sentence in train_set["sentence"]])
    step, epoch_loss, chunk_loss, chunk_batches = 0, 0.0, 0.0, 0
    bar = None
    for epoch, first, end, at_checkpoint, at_epoch_end in _segments(
        batches_per_epoch, settings.num_epochs, settings.checkpoints
    ):
        if first == 0:
            # The epoch's batches: random, of similar-length sentences (less padding: about twice as fast).
            order = length_grouped_order(lengths, rng.permutation(len(train_set)), settings.batch_size, rng)
            epoch_batches = iter(make_dataloader(train_set.select(order), tokenizer, settings.batch_size))
            bar = tqdm(total=batches_per_epoch, desc=f"{LABELS[method]} seed {seed} epoch {epoch + 1}",
                       leave=False, disable=not progress)  # fmt: skip
        n_batches = end - first
        start = time.perf_counter()
        loss = train_one_epoch(model, _Batches(epoch_batches, n_batches, device, bar), optimizer)
        loss = _student_number(loss, "train_one_epoch")
        run.train_seconds += time.perf_counter() - start
        if steps_taken[0] != step + n_batches:
            raise LabConfigError(
                f"train_one_epoch made {steps_taken[0] - step} optimizer steps for {n_batches} batches: "
                "call optimizer.step() exactly once per batch, and go through the loader once."
            )
        step += n_batches
        epoch_loss += loss * n_batches
        chunk_loss += loss * n_batches
        chunk_batches += n_batches
        bar.set_postfix(loss=f"{loss:.3f}")
        if at_checkpoint:
            weights = (
                analysis.linear_weights(model) if method == "full" else analysis.merged_weights(model)
            )  # (out, in) float32 CPU tensors of every query/value projection
            decomposition = {
                layer: analysis.magnitude_direction_change(pretrained[layer], W) for layer, W in weights.items()
            }
            run.checkpoints.append(
                Checkpoint(step=step, epoch=step / batches_per_epoch, train_loss=chunk_loss / chunk_batches,
                           decomposition=decomposition, weights=weights if keep_weights else {})
            )  # fmt: skip
            chunk_loss, chunk_batches = 0.0, 0
        if at_epoch_end:
            bar.close()
            run.train_loss.append(epoch_loss / batches_per_epoch)
            epoch_loss = 0.0
            start = time.perf_counter()
            eval_bar = tqdm(total=len(eval_loader), desc=f"{LABELS[method]} seed {seed} evaluate", leave=False,
                            disable=not progress)  # fmt: skip
            accuracy = evaluate_accuracy(model, _Batches(eval_loader, len(eval_loader), device, eval_bar))
            accuracy = _student_number(accuracy, "evaluate_accuracy")
            eval_bar.close()
            run.eval_seconds += time.perf_counter() - start
            run.val_accuracy_per_epoch.append(accuracy)
            if progress:
                print(
                    f"{LABELS[method]} seed {seed} epoch {epoch + 1}/{settings.num_epochs}: train loss "
                    f"{run.train_loss[-1]:.3f}, accuracy {accuracy:.3f} ({run.seconds:.0f} s; {trainable:,} of "
                    f"{total:,} parameters trainable, {100 * trainable / total:.2f} %)"
                )
    return run


def _load_data(settings: Settings, data_dir):
    train_set = load_sst2("train", n=settings.n_train, data_dir=data_dir, seed=settings.data_seed)
    eval_set = load_sst2("validation", n=settings.n_eval, data_dir=data_dir, seed=settings.data_seed)
    return train_set, eval_set


def _eval_loader(eval_set, tokenizer, batch_size: int):
    # Sentences of similar length in one batch: dynamic padding then pads little, and accuracy ignores the order.
    eval_set = eval_set.select(np.argsort([len(s) for s in eval_set["sentence"]], kind="stable"))
    return make_dataloader(eval_set, tokenizer, batch_size)


def _check_sizes(settings: Settings, n_train: int) -> None:
    if settings.checkpoints > settings.steps(n_train):
        raise LabConfigError(
            f"checkpoints={settings.checkpoints} is more than the {settings.steps(n_train)} optimiser steps of a run: "
            "use fewer checkpoints or more training sentences."
        )


def run_comparison(
    make_lora_config: Callable[[bool], object],
    train_one_epoch: Callable,
    evaluate_accuracy: Callable,
    settings: Settings,
    *,
    base_model: nn.Module | None = None,
    tokenizer=None,
    output_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    keep_weights: bool = True,
    progress: bool = True,
) -> Comparison:
    """Fine-tune a fresh copy of the base model per method and seed with your loop; measure it; write the results.

    For each method and seed: copy the pretrained model, draw a new classification head, and either train every
    weight ("full") or wrap the copy with `get_peft_model(model, make_lora_config(use_dora))` ("lora", "dora");
    train with AdamW and the settings' learning-rate schedule, calling your `train_one_epoch` on consecutive
    pieces of each epoch (so that the weights can be measured at `settings.checkpoints` evenly spaced points), and
    measure validation accuracy after every epoch with your `evaluate_accuracy`. At each checkpoint the query/value
    weights (for LoRA/DoRA the merged ones, as PEFT's merge_and_unload gives) are compared with the pretrained
    ones (paper §3.2). Same seed, same batches, head init and dropout stream for every method: runs are paired.

    Args:
        make_lora_config: `make_lora_config(use_dora) -> peft.LoraConfig` (not called for "full").
        train_one_epoch: `train_one_epoch(model, loader, optimizer) -> mean batch loss`.
        evaluate_accuracy: `evaluate_accuracy(model, loader) -> fraction of examples correct`.
        settings: sizes and hyper-parameters, e.g. default_settings(config.fast).
        base_model, tokenizer: the pretrained model and its tokenizer (never modified); None loads the packaged MiniLM.
        output_dir: where ex4_results.json goes; None = LabConfig.output_dir ($LAB_OUTPUT_DIR).
        data_dir: SST-2 folder; None = $LAB_DATA_DIR, data/sst2, or the hub (see data.load_sst2).
        device: where to train; None = LabConfig.device ($LAB_DEVICE, default CUDA when available).
        keep_weights: keep every checkpoint's merged weights in memory (for Figure 2; about 7 MB each).
        progress: show tqdm progress bars and one line per epoch.

    Returns:
        A Comparison; everything but the weights is also in `output_dir/ex4_results.json`.
    """
    if (base_model is None) != (tokenizer is None):
        raise LabConfigError(
            "pass both base_model and tokenizer (from load_base_model), or neither to load the packaged model."
        )
    device = analysis.resolve_device(device)
    lora_configs = {m: None if m == "full" else _lora_config(make_lora_config, m) for m in settings.methods}
    if base_model is None:
        base_model, tokenizer = load_base_model(verbose=progress)
    output_dir = Path(output_dir) if output_dir is not None else get_config().output_dir

    train_set, eval_set = _load_data(settings, data_dir)
    _check_sizes(settings, len(train_set))
    eval_loader = _eval_loader(eval_set, tokenizer, settings.eval_batch_size)
    pretrained = analysis.linear_weights(base_model)
    comparison = Comparison(
        settings=settings, runs=[], n_train=len(train_set), n_eval=len(eval_set), device=str(device),
        model=getattr(base_model.config, "_name_or_path", None) or PACKAGED_MODEL,
        torch_threads=torch.get_num_threads(), pretrained=pretrained,
    )  # fmt: skip
    for method in settings.methods:
        for seed in settings.seeds_of(method):
            comparison.runs.append(
                _train_run(
                    method,
                    seed,
                    settings.learning_rates[method],
                    lora_configs[method],
                    train_one_epoch,
                    evaluate_accuracy,
                    settings=settings,
                    base_model=base_model,
                    tokenizer=tokenizer,
                    train_set=train_set,
                    eval_loader=eval_loader,
                    pretrained=pretrained,
                    device=device,
                    keep_weights=keep_weights,
                    progress=progress,
                )  # fmt: skip
            )
    path = comparison.write(output_dir)
    if progress:
        print(f"Wrote {path}")
    return comparison


# ---------------------------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class MethodSummary:
    """One method's runs, averaged over seeds.

    Attributes:
        method, seeds: which runs.
        val_accuracy_mean, val_accuracy_std: mean and sample standard deviation over seeds (std 0 for one seed).
        binomial_se: sqrt(p (1 - p) / n_eval) at the mean accuracy p: the sampling error of one accuracy measured
            on n_eval validation sentences.
        train_loss_mean, train_loss_std: of the last epoch's mean batch loss.
        trainable_params: of one run.
        seconds_mean, seconds_std: time per run (training and evaluation).
    """

    method: str
    seeds: tuple[int, ...]
    val_accuracy_mean: float
    val_accuracy_std: float
    binomial_se: float
    train_loss_mean: float
    train_loss_std: float
    trainable_params: int
    seconds_mean: float
    seconds_std: float


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of `method` minus that of `baseline`, seed by seed (runs with one seed share batches and head init).

    Attributes:
        method, baseline: the two methods.
        seeds: the seeds both ran.
        differences: per seed, in accuracy (fractions, not points).
        mean, standard_error: of the differences (standard error = sample std / sqrt(n); nan for one seed).
        interval: the 95 % Student-t interval of the mean difference, (nan, nan) for one seed.
    """

    method: str
    baseline: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    standard_error: float
    interval: tuple[float, float]

    @property
    def separates(self) -> bool:
        """Whether the 95 % interval excludes 0 (False when it is unknown)."""
        low, high = self.interval
        return bool(low > 0 or high < 0)


def _spread(mean: float, std: float, n: int, digits: int = 3) -> str:
    """'0.817 ± 0.015' over several seeds; one seed has no spread: '0.823 (1 seed)'."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f} (1 seed)"


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def summarize(comparison: Comparison, verbose: bool = True) -> dict[str, MethodSummary]:
    """Average each method's runs over seeds; print one line per method and the paired differences.

    Args:
        comparison: what run_comparison returned (or Comparison.from_json of a saved ex4_results.json).
        verbose: print the table.

    Returns:
        {method: MethodSummary}.
    """
    summary = {}
    for method in comparison.methods:
        runs = comparison.runs_of(method)
        accuracy = _mean_std(run.val_accuracy for run in runs)
        loss = _mean_std(run.train_loss[-1] for run in runs)
        seconds = _mean_std(run.seconds for run in runs)
        summary[method] = MethodSummary(
            method=method, seeds=tuple(run.seed for run in runs), val_accuracy_mean=accuracy[0],
            val_accuracy_std=accuracy[1],
            binomial_se=math.sqrt(accuracy[0] * (1 - accuracy[0]) / comparison.n_eval),
            train_loss_mean=loss[0], train_loss_std=loss[1], trainable_params=runs[0].trainable_params,
            seconds_mean=seconds[0], seconds_std=seconds[1],
        )  # fmt: skip
    if verbose:
        print(
            f"{'method':<8}{'seeds':>6}  {'val accuracy':>15}  {'binomial SE':>11}  {'final train loss':>17}  "
            f"{'trainable params':>17}  {'seconds/run':>12}"
        )
        for method, s in summary.items():
            print(
                f"{LABELS[method]:<8}{len(s.seeds):>6}  "
                f"{_spread(s.val_accuracy_mean, s.val_accuracy_std, len(s.seeds)):>15}  {s.binomial_se:>11.3f}  "
                f"{_spread(s.train_loss_mean, s.train_loss_std, len(s.seeds)):>17}  {s.trainable_params:>17,}  "
                f"{_spread(s.seconds_mean, s.seconds_std, len(s.seeds), 0):>12}"
            )
        print(
            f"(± is the sample standard deviation over seeds; the binomial SE is the sampling error of one accuracy "
            f"on {comparison.n_eval} validation sentences)"
        )
        for difference in paired_differences(comparison):
            print(_difference_line(difference))
    return summary


def paired_differences(comparison: Comparison) -> list[PairedDifference]:
    """Compare every pair of methods seed by seed: DoRA − LoRA, full − LoRA, full − DoRA (those that ran).

    Args:
        comparison: what run_comparison returned.

    Returns:
        One PairedDifference per pair of methods that share at least one seed.
    """
    pairs = [("dora", "lora"), ("full", "lora"), ("full", "dora")]
    differences = []
    for method, baseline in pairs:
        a = {run.seed: run.val_accuracy for run in comparison.runs_of(method)}
        b = {run.seed: run.val_accuracy for run in comparison.runs_of(baseline)}
        seeds = tuple(sorted(a.keys() & b.keys()))
        if not seeds:
            continue
        values = np.asarray([a[s] - b[s] for s in seeds], dtype=np.float64)
        mean = float(values.mean())
        if values.size > 1:
            se = float(values.std(ddof=1) / math.sqrt(values.size))
            half = analysis.t_quantile_95(values.size - 1) * se
            interval = (mean - half, mean + half)
        else:
            se, interval = math.nan, (math.nan, math.nan)
        differences.append(PairedDifference(method, baseline, seeds, tuple(values.tolist()), mean, se, interval))
    return differences


def _difference_line(d: PairedDifference) -> str:
    per_seed = ", ".join(f"{100 * v:+.1f}" for v in d.differences)
    head = f"{LABELS[d.method]} − {LABELS[d.baseline]}: {per_seed} points (seed{'s' * (len(d.seeds) > 1)} "
    head += ", ".join(map(str, d.seeds)) + ")"
    if len(d.seeds) < 2:
        return head + "; one paired seed: no spread, so no verdict."
    low, high = d.interval
    verdict = (
        "the 95 % interval excludes 0"
        if d.separates
        else "the 95 % interval includes 0: these seeds cannot separate the two"
    )
    return (
        f"{head}; mean {100 * d.mean:+.1f} ± {100 * d.standard_error:.1f} (standard error), 95 % interval "
        f"[{100 * low:+.1f}, {100 * high:+.1f}]: {verdict}."
    )


def insights(comparison: Comparison, trajectory: analysis.Trajectory | None = None) -> str:
    """Say in plain sentences what this notebook measured: accuracy and paired gaps, cost, Figure 2's correlations.

    Args:
        comparison: what run_comparison returned.
        trajectory: what analysis.decomposition_trajectory returned, or None.

    Returns:
        A few lines of text built from the measured numbers only.
    """
    summary = summarize(comparison, verbose=False)
    lines = ["Accuracy (validation, mean ± std over seeds):"]
    for method, s in summary.items():
        lines.append(
            f"- {LABELS[method]}: {_spread(s.val_accuracy_mean, s.val_accuracy_std, len(s.seeds))}"
            f"{f' over {len(s.seeds)} seeds' if len(s.seeds) > 1 else ''} "
            f"(one accuracy on {comparison.n_eval} sentences has a binomial SE of {s.binomial_se:.3f}); "
            f"{s.trainable_params:,} trainable parameters; {s.seconds_mean:.0f} s per run."
        )
    lines += [f"- {_difference_line(d)}" for d in paired_differences(comparison)]
    if {"lora", "dora"} <= summary.keys():
        lora, dora = summary["lora"], summary["dora"]
        extra = dora.trainable_params - lora.trainable_params
        ratio = dora.seconds_mean / lora.seconds_mean if lora.seconds_mean > 0 else math.nan
        lines.append(
            f"- DoRA's cost: {extra:,} more trainable parameters than LoRA (+{100 * extra / lora.trainable_params:.1f} "
            f"%, one magnitude per adapted output feature) and {ratio:.2f}x LoRA's time per run on this machine."
        )
    if trajectory is not None:
        lines.append("")
        lines += analysis.figure2_findings(trajectory, labels=LABELS)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Choosing the learning rates (`make tune`), on the train split only


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
    make_lora_config: Callable[[bool], object],
    train_one_epoch: Callable,
    evaluate_accuracy: Callable,
    settings: Settings,
    grid: Mapping[str, Sequence[float]],
    schedules: Sequence[tuple[str, float]] = (("constant_with_warmup", 0.0), ("linear", 0.1)),
    *,
    n_heldout: int = 1000,
    base_model: nn.Module | None = None,
    tokenizer=None,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Tuning:
    """Train every method at every learning rate of `grid` under every schedule, score each on held-out train data.

    The runs are those of run_comparison (same training sample, batches, seeds and loop), but accuracy is measured
    on `n_heldout` sentences of the train split that no run trains on; the validation split is never read.

    Args:
        make_lora_config, train_one_epoch, evaluate_accuracy: as for run_comparison.
        settings: sizes (n_train, batch_size, num_epochs, seeds …); its methods are the ones tuned.
        grid: {method: learning rates to try}.
        schedules: (transformers schedule name, warm-up ratio) pairs; the first is the baseline (see Tuning.choose).
        n_heldout: held-out sentences of the train split.
        base_model, tokenizer, data_dir, device, progress: as for run_comparison.

    Returns:
        A Tuning with every row and the choice.
    """
    if base_model is None:
        base_model, tokenizer = load_base_model(verbose=progress)
    device = analysis.resolve_device(device)
    lora_configs = {m: None if m == "full" else _lora_config(make_lora_config, m) for m in settings.methods}
    train_set = load_sst2("train", n=settings.n_train, data_dir=data_dir, seed=settings.data_seed)
    _check_sizes(settings, len(train_set))
    heldout = heldout_train_sample(train_set, n_heldout, data_dir=data_dir, seed=settings.data_seed + 1)
    eval_loader = _eval_loader(heldout, tokenizer, settings.eval_batch_size)
    pretrained = analysis.linear_weights(base_model)
    tuning = Tuning(rows=[], n_train=len(train_set), n_heldout=len(heldout))
    for schedule, warmup_ratio in schedules:
        for method in settings.methods:
            for lr in grid[method]:
                run_settings = dataclasses.replace(
                    settings, schedule=schedule, warmup_ratio=warmup_ratio,
                    learning_rates={**settings.learning_rates, method: lr},
                )  # fmt: skip
                for seed in settings.seeds_of(method):
                    run = _train_run(
                        method, seed, lr, lora_configs[method], train_one_epoch, evaluate_accuracy,
                        settings=run_settings, base_model=base_model, tokenizer=tokenizer, train_set=train_set,
                        eval_loader=eval_loader, pretrained=pretrained, device=device, keep_weights=False,
                        progress=False,
                    )  # fmt: skip
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
