"""Exercise 4's loop: full fine-tuning, LoRA and DoRA run by your training functions, per seed, with checkpoints.

The loop itself (`train_one_epoch`, `evaluate_accuracy`) is yours: it is passed in, never defined here. What every
run shares (the pretrained model, the data, the device, your functions) is prepared once, as a `RunContext`;
`train_run` trains one method with one seed from it, and `run_comparison` runs them all and writes the results.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from labhelpers.config import LabConfig, get_config
from labhelpers.data import length_grouped_order, make_dataloader
from labhelpers.errors import LabConfigError
from labhelpers.models import PACKAGED_MODEL, count_parameters
from labhelpers.seeding import forked, seed_all
from labhelpers.training.context import LoopFunctions, RunContext, peft_model_of, prepare
from labhelpers.training.records import Checkpoint, Comparison, Run
from labhelpers.training.saved import code_digest, save_comparison
from labhelpers.training.settings import LABELS, YOUR_LAYER, Settings
from labhelpers.training.states import checkpoint_state, weights_from_state
from labhelpers.training.your_layer import build_layer_model, check_forward
from labhelpers.weights import magnitude_direction_change


def run_comparison(
    functions: LoopFunctions,
    settings: Settings,
    *,
    base_model: nn.Module | None = None,
    tokenizer=None,
    config: LabConfig | None = None,
    keep_weights: bool = True,
    progress: bool = True,
) -> Comparison:
    """Fine-tune a fresh copy of the base model per method and seed with your loop; measure it; write the results.

    For each method and seed: copy the pretrained model, draw a new classification head, and either train every
    weight ("full") or wrap the copy with your `make_peft_model(model, use_dora)` ("lora", "dora");
    train with AdamW and the settings' learning-rate schedule, calling your `train_one_epoch` on consecutive
    pieces of each epoch (so that the weights can be measured at `settings.checkpoints` evenly spaced points), and
    measure validation accuracy after every epoch with your `evaluate_accuracy`. At each checkpoint the query/value
    weights (for LoRA/DoRA the merged ones, as PEFT's merge_and_unload gives) are compared with the pretrained
    ones (paper §3.2). Same seed: same batches and head init for every method, and the same dropout stream for LoRA
    and DoRA (full fine-tuning draws no adapter init): runs are paired. With `functions.dora_layer`, DoRA's first seed
    is trained once more with your DoRALinear in PEFT's place, from PEFT's initial adapters (run "dora_yours"); if
    your layer cannot run, that run is skipped with a note and the comparison goes on.

    Args:
        functions: your make_peft_model, train_one_epoch and evaluate_accuracy (and optionally your DoRALinear).
        settings: sizes and hyper-parameters, e.g. default_settings(config.size).
        base_model, tokenizer: the pretrained model and its tokenizer (never modified); None loads the packaged MiniLM.
        config: where the data, the results and the device are (data_dir, output_dir, device); None = the config
            in force (what setup() chose, else the LAB_* variables).
        keep_weights: keep every checkpoint's merged weights in memory (for Figure 2; about 7 MB each).
        progress: show tqdm progress bars and one line per epoch.

    Returns:
        A Comparison, also written to `config.output_dir`: ex4_results.json, and (keep_weights) the adapters' or
        the weights' checkpoints in ex4_weights.safetensors (training.saved; `load_or_run_comparison` reloads them).
    """
    context = prepare(
        functions, settings, base_model=base_model, tokenizer=tokenizer, config=config, progress=progress
    )
    output_dir = (get_config() if config is None else config).output_dir
    comparison = Comparison(
        settings=settings, runs=[], n_train=len(context.train_set), n_eval=context.n_eval, device=str(context.device),
        model=model_name(context.base_model), torch_threads=torch.get_num_threads(), pretrained=context.pretrained,
        code=code_digest(functions),
    )  # fmt: skip
    for method in settings.methods:
        for seed in settings.seeds_of(method):
            comparison.runs.append(
                train_run(context, method, seed, settings, keep_weights=keep_weights, progress=progress)
            )
    if functions.dora_layer is not None and "dora" in settings.methods:
        _your_layer_run(comparison, context, settings, keep_weights, progress)
    paths = save_comparison(comparison, output_dir)
    if progress:
        print(f"Wrote {', '.join(str(path) for path in paths)}")
    return comparison


def model_name(base_model: nn.Module) -> str:
    """Return the name a comparison records for its base model (its folder or hub id; the packaged MiniLM's name)."""
    return getattr(base_model.config, "_name_or_path", None) or PACKAGED_MODEL


def _your_layer_run(comparison: Comparison, context: RunContext, settings: Settings, keep: bool, progress: bool):
    """Train DoRA's first seed with your DoRALinear; on failure add a one-line note instead of the run."""
    seed = settings.seeds_of("dora")[0]
    try:
        comparison.runs.append(train_run(context, YOUR_LAYER, seed, settings, keep_weights=keep, progress=progress))
    except Exception as error:  # your layer's code, whatever it raises: the other runs still count
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        note = (
            f"Your DoRALinear was not trained on SST-2 ({reason}); the comparison goes on without it. Run Exercise "
            f"2's check cell to see what to fix."
        )
        comparison.notes.append(note)
        if progress:
            print(note)


def train_run(
    context: RunContext,
    method: str,
    seed: int,
    settings: Settings,
    *,
    keep_weights: bool = True,
    progress: bool = True,
) -> Run:
    """Train and evaluate one method with one seed, calling your functions piece by piece; return its Run.

    Args:
        context: from prepare.
        method: "full", "lora", "dora", or "dora_yours" (DoRA with functions.dora_layer, from PEFT DoRA's start).
        seed: fixes the head's and the adapters' init, the batches and dropout.
        settings: sizes, the schedule and `settings.learning_rates[method]`, the peak learning rate.
        keep_weights: keep each checkpoint's weights in memory.
        progress: show tqdm progress bars and one line per epoch.

    Returns:
        The Run. Raises LabConfigError when your functions return something unusable or step the optimiser wrongly.
    """
    model, lora_config = _build_model(method, seed, context, settings)
    lr = settings.learning_rates["dora" if method == YOUR_LAYER else method]
    run = _empty_run(model, method, seed, lr, lora_config)
    batches_per_epoch = math.ceil(len(context.train_set) / settings.batch_size)
    optimizer, steps_taken = _scheduled_adamw(model, settings, run.lr, batches_per_epoch)
    rng = np.random.default_rng(seed)
    lengths = np.array([len(sentence) for sentence in context.train_set["sentence"]])
    tally = _Tally()
    for epoch, first, end, at_checkpoint, at_epoch_end in _segments(
        batches_per_epoch, settings.num_epochs, settings.checkpoints
    ):
        if first == 0:
            # The epoch's batches: random, of similar-length sentences (less padding: about twice as fast).
            order = length_grouped_order(lengths, rng.permutation(len(context.train_set)), settings.batch_size, rng)
            epoch_batches = iter(
                make_dataloader(context.train_set.select(order), context.tokenizer, settings.batch_size)
            )
            bar = tqdm(total=batches_per_epoch, desc=f"{LABELS[method]} seed {seed} epoch {epoch + 1}",
                       leave=False, disable=not progress)  # fmt: skip
        n_batches = end - first
        loss = _train_piece(model, _Batches(epoch_batches, n_batches, context.device, bar), optimizer, run, context)
        if steps_taken[0] != tally.steps + n_batches:
            raise LabConfigError(
                f"train_one_epoch made {steps_taken[0] - tally.steps} optimizer steps for {n_batches} batches: "
                "call optimizer.step() exactly once per batch, and go through the loader once."
            )
        tally.add(loss, n_batches)
        bar.set_postfix(loss=f"{loss:.3f}")
        if at_checkpoint:
            run.checkpoints.append(_checkpoint(model, run, context, tally, batches_per_epoch, keep_weights))
        if at_epoch_end:
            bar.close()
            run.train_loss.append(tally.end_epoch(batches_per_epoch))
            _evaluate(model, run, context, f"epoch {epoch + 1}/{settings.num_epochs}", progress)
    return run


# ---------------------------------------------------------------------------------------------------------------
# The pieces of a run


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


def _empty_run(model: nn.Module, method: str, seed: int, lr: float, lora_config) -> Run:
    """Return the Run record of a model about to train: its parameter counts, no results yet."""
    trainable, total = count_parameters(model)
    return Run(
        method=method, seed=seed, lr=lr, val_accuracy_per_epoch=[], train_loss=[], checkpoints=[],
        trainable_params=int(trainable), total_params=int(total), train_seconds=0.0, eval_seconds=0.0,
        lora_config=None if lora_config is None else _config_summary(lora_config),
    )  # fmt: skip


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


def _build_model(method: str, seed: int, context: RunContext, settings: Settings) -> tuple[nn.Module, object]:
    """Return a fresh trainable copy of the base model for one run, and its PEFT config (None for "full").

    "full" trains every weight; "lora"/"dora" are your make_peft_model's PEFT model; "dora_yours" is the model of
    "dora" with your DoRALinear in place of PEFT's layers, from the same initial adapters and head.
    """
    # Seeded for good, not forked: get_peft_model draws lora_A from the global generator, and so does dropout in
    # your train_one_epoch afterwards.
    seed_all(seed)
    model = copy.deepcopy(context.base_model)
    _reset_head(model, seed)
    lora_config = None
    if method == "full":
        # Full fine-tuning: every parameter of the encoder (embeddings included), the pooler and the new head.
        model.requires_grad_(True)
    else:
        # PEFT freezes the base model, adds the adapters (its init: lora_B = 0, lora_A from the seeded generator)
        # and, for SEQ_CLS, makes the new classifier trainable.
        model = peft_model_of(context.functions, model, use_dora=method != "lora")
        lora_config = model.peft_config[model.active_adapter]
    if method == YOUR_LAYER:
        # Your layers, built and tried on a forked random state: the dropout stream then starts where PEFT's run's does.
        with forked(device=context.device):
            mine = copy.deepcopy(context.base_model)
            _reset_head(mine, seed)
            model = build_layer_model(model, mine, context.functions.dora_layer).to(context.device)
            check_forward(model, next(iter(context.eval_loader)), context.device)
    if settings.dropout is not None:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = settings.dropout
    return model.to(context.device), lora_config


def _scheduled_adamw(
    model: nn.Module, settings: Settings, lr: float, batches_per_epoch: int
) -> tuple[torch.optim.Optimizer, list[int]]:
    """Return AdamW over the trainable parameters, its schedule attached, and the list counting its steps."""
    from transformers import get_scheduler

    # No weight decay: decay would pull DoRA's magnitude (and every full fine-tuning weight) towards 0 and show up
    # as a magnitude change in Figure 2. fused=True: one kernel per step over all parameters instead of a dozen
    # passes; for full fine-tuning's 22.7M parameters that is about 70 ms instead of 400-500 ms per step on this
    # lab's 2-core CPU (the same update; negligible for the adapters' 75k).
    trainable_parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable_parameters, lr=lr, weight_decay=0.0, fused=True)
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
    return optimizer, steps_taken


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


@dataclass
class _Tally:
    """Optimiser steps so far and the batch losses summed since the epoch began and since the last checkpoint."""

    steps: int = 0
    epoch_loss: float = 0.0
    chunk_loss: float = 0.0
    chunk_batches: int = 0

    def add(self, loss: float, n_batches: int) -> None:
        """Count a piece of `n_batches` batches whose mean loss was `loss`."""
        self.steps += n_batches
        self.epoch_loss += loss * n_batches
        self.chunk_loss += loss * n_batches
        self.chunk_batches += n_batches

    def end_chunk(self) -> float:
        """Return the mean batch loss since the last checkpoint, and start counting again."""
        mean = self.chunk_loss / self.chunk_batches
        self.chunk_loss, self.chunk_batches = 0.0, 0
        return mean

    def end_epoch(self, batches_per_epoch: int) -> float:
        """Return the epoch's mean batch loss, and start counting again."""
        mean = self.epoch_loss / batches_per_epoch
        self.epoch_loss = 0.0
        return mean


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


def _train_piece(model: nn.Module, batches: _Batches, optimizer, run: Run, context: RunContext) -> float:
    """Call your train_one_epoch on one piece of an epoch; add its time to the run; return its mean batch loss."""
    start = time.perf_counter()
    loss = _student_number(context.functions.train_one_epoch(model, batches, optimizer), "train_one_epoch")
    run.train_seconds += time.perf_counter() - start
    return loss


def _checkpoint(
    model: nn.Module, run: Run, context: RunContext, tally: _Tally, batches_per_epoch: int, keep_weights: bool
) -> Checkpoint:
    """Measure the adapted weights against the pretrained ones (paper §3.2) and close the piece's loss."""
    # What rebuilds the weights (full: the weights; LoRA/DoRA: the adapters), and the merged (out, in) float32 CPU
    # weights of every query/value projection, as PEFT's merge_and_unload gives (for your layer: m·V/‖V‖).
    state = checkpoint_state(model, run.method, context.functions.dora_layer)
    weights = weights_from_state(state, context.pretrained)
    decomposition = {layer: magnitude_direction_change(context.pretrained[layer], W) for layer, W in weights.items()}
    return Checkpoint(
        step=tally.steps, epoch=tally.steps / batches_per_epoch, train_loss=tally.end_chunk(),
        decomposition=decomposition, weights=weights if keep_weights else {}, state=state if keep_weights else {},
    )  # fmt: skip


def _evaluate(model: nn.Module, run: Run, context: RunContext, when: str, progress: bool) -> None:
    """Measure accuracy with your evaluate_accuracy at the end of an epoch; add it (and its time) to the run."""
    start = time.perf_counter()
    eval_bar = tqdm(total=len(context.eval_loader), desc=f"{LABELS[run.method]} seed {run.seed} evaluate",
                    leave=False, disable=not progress)  # fmt: skip
    batches = _Batches(context.eval_loader, len(context.eval_loader), context.device, eval_bar)
    accuracy = _student_number(context.functions.evaluate_accuracy(model, batches), "evaluate_accuracy")
    eval_bar.close()
    run.eval_seconds += time.perf_counter() - start
    run.val_accuracy_per_epoch.append(accuracy)
    if progress:
        trainable, total = run.trainable_params, run.total_params
        print(
            f"{LABELS[run.method]} seed {run.seed} {when}: train loss {run.train_loss[-1]:.3f}, accuracy "
            f"{accuracy:.3f} ({run.seconds:.0f} s; {trainable:,} of {total:,} parameters trainable, "
            f"{100 * trainable / total:.2f} %)"
        )
