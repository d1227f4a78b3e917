"""The LoRA-vs-DoRA comparison: your training functions, run per method and seed, with checkpoints and a results file.

The loop itself (`train_one_epoch`, `evaluate_accuracy`) is the student's: it is passed in, never defined here.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm

from labhelpers import analysis
from labhelpers.config import LabConfig
from labhelpers.data import length_grouped_order, load_sst2, make_dataloader
from labhelpers.errors import LabConfigError
from labhelpers.models import PACKAGED_MODEL, count_parameters, load_base_model

RESULTS_FILE = "ex4_results.json"

# Measured on SST-2 with the packaged MiniLM (rank 8 on query/value, AdamW without weight decay, one epoch of
# 2,000 sentences in batches of 16): the adapters start at lora_B = 0 and hold 0.3 % of the weights, so a full
# fine-tuning rate (5e-5) barely moves them in a short run, while 2e-3 reaches 0.81 validation accuracy with
# LoRA and DoRA alike (1e-3 with batches of 32: 0.77).
LEARNING_RATE = 2e-3


def default_settings(fast: bool) -> dict:
    """Return the lab's sizes: the student size, or the LAB_FAST size (about a minute) for CI and grading.

    Args:
        fast: LabConfig.fast (`LAB_FAST=1`).

    Returns:
        {"comparison": keyword arguments of run_comparison, "gradient_steps": steps of the Exercise 3 run}.
    """
    if fast:
        comparison = dict(
            methods=("lora", "dora"), seeds=(0,), num_epochs=1, lr=LEARNING_RATE, batch_size=16,
            n_train=320, n_eval=128, checkpoints_per_epoch=2,
        )  # fmt: skip
        return {"comparison": comparison, "gradient_steps": 30}
    # Three seeds per method of one epoch over 5,000 sentences, checkpoints every 1,000, the whole validation split
    # (872 sentences): about a minute per run on a 2-core laptop CPU (batches of similar lengths). With 4,000
    # sentences the two methods averaged 0.811 and 0.807 over three seeds, one seed under 0.80.
    comparison = dict(
        methods=("lora", "dora"), seeds=(0, 1, 2), num_epochs=1, lr=LEARNING_RATE, batch_size=16,
        n_train=5000, n_eval=None, checkpoints_per_epoch=5,
    )  # fmt: skip
    return {"comparison": comparison, "gradient_steps": 150}


class _Progress:
    """Iterate over a DataLoader while advancing a shared tqdm bar (one bar per epoch across its chunks)."""

    def __init__(self, loader, bar):
        self.loader = loader
        self.bar = bar

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
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


def run_comparison(
    make_lora_config: Callable[[bool], object],
    train_one_epoch: Callable,
    evaluate_accuracy: Callable,
    *,
    methods: Sequence[str] = ("lora", "dora"),
    seeds: Sequence[int] = (0, 1, 2),
    num_epochs: int = 1,
    lr: float = LEARNING_RATE,
    batch_size: int = 16,
    n_train: int | None = 2500,
    n_eval: int | None = None,
    checkpoints_per_epoch: int = 5,
    output_dir: str | os.PathLike | None = None,
    base_model: nn.Module | None = None,
    tokenizer=None,
    data_dir: str | os.PathLike | None = None,
    data_seed: int = 0,
    eval_batch_size: int = 128,
    keep_weights: bool = True,
    progress: bool = True,
) -> dict:
    """Fine-tune a fresh copy of the base model with LoRA and with DoRA for each seed, using your loop.

    For each method and seed: copy the pretrained model, draw a new classification head, wrap it with
    `get_peft_model(model, make_lora_config(use_dora))`, train it with AdamW for `num_epochs` epochs with your
    `train_one_epoch`, and measure validation accuracy after every epoch with your `evaluate_accuracy`.

    Checkpoints: every epoch's (shuffled) training set is cut into `checkpoints_per_epoch` equal chunks and
    `train_one_epoch` is called once per chunk (one pass over it); after each chunk the merged query/value weights
    are measured against the pretrained ones (paper §3.2), which gives Figure 2 its points along training.

    Args:
        make_lora_config: `make_lora_config(use_dora) -> peft.LoraConfig`.
        train_one_epoch: `train_one_epoch(model, loader, optimizer) -> mean batch loss`.
        evaluate_accuracy: `evaluate_accuracy(model, loader) -> fraction of examples correct`.
        methods: "lora" and/or "dora".
        seeds: one run per method and seed (adapter init, head init, dropout, batch order).
        num_epochs: passes over the training sample.
        lr: AdamW's learning rate (see LEARNING_RATE for why adapters need a large one).
        batch_size: training sentences per batch.
        n_train: size of the label-stratified training sample (the same sample for every run); None = all 67,349.
        n_eval: size of the stratified validation sample; None = the whole split (872 sentences).
        checkpoints_per_epoch: chunks per epoch, i.e. weight measurements per epoch.
        output_dir: where ex4_results.json goes; None = LabConfig.from_env().output_dir ($LAB_OUTPUT_DIR).
        base_model, tokenizer: the pretrained model and its tokenizer (never modified); None loads the packaged MiniLM.
        data_dir: SST-2 folder; None = $LAB_DATA_DIR, data/sst2, or the hub (see data.load_sst2).
        data_seed: seed of the training and validation samples.
        eval_batch_size: sentences per evaluation batch.
        keep_weights: keep the merged weights at every checkpoint of each method's first seed in memory
            (results["weights"], for analysis.decomposition_trajectory and the weight plots; ~6 MB per checkpoint).
        progress: show tqdm progress bars and one line per epoch.

    Returns:
        {"config": {...}, "runs": [one dict per method and seed: "method", "seed", "val_accuracy" (last epoch),
        "val_accuracy_per_epoch", "train_loss" (per epoch), "checkpoint_epoch" / "checkpoint_train_loss" (per chunk),
        "trainable_params", "total_params", "seconds" (training + evaluation), "train_seconds", "eval_seconds",
        "lora_config", "decomposition" (ΔM, ΔD per checkpoint and layer, measured with
        analysis.magnitude_direction_change)], "results_file": path, "weights": in-memory tensors (not in the file)}.
        Everything but "weights" is written to `output_dir/ex4_results.json`.
    """
    unknown = [m for m in methods if m not in ("lora", "dora")]
    if unknown or not methods:
        raise LabConfigError(f"methods={tuple(methods)!r}: use 'lora' and/or 'dora'.")
    if not seeds:
        raise LabConfigError("seeds is empty: pass at least one seed, e.g. seeds=(0,).")
    if num_epochs < 1 or checkpoints_per_epoch < 1 or batch_size < 1:
        raise LabConfigError(
            f"num_epochs={num_epochs}, checkpoints_per_epoch={checkpoints_per_epoch} and batch_size={batch_size} must all be at least 1."
        )
    if (base_model is None) != (tokenizer is None):
        raise LabConfigError(
            "pass both base_model and tokenizer (from load_base_model), or neither to load the packaged model."
        )
    if base_model is None:
        base_model, tokenizer = load_base_model(verbose=progress)
    output_dir = Path(output_dir) if output_dir is not None else LabConfig.from_env().output_dir

    train_set = load_sst2("train", n=n_train, data_dir=data_dir, seed=data_seed)
    eval_set = load_sst2("validation", n=n_eval, data_dir=data_dir, seed=data_seed)
    if checkpoints_per_epoch > len(train_set):
        raise LabConfigError(
            f"checkpoints_per_epoch={checkpoints_per_epoch} is more than the {len(train_set)} training sentences."
        )
    # Sentences of similar length in one batch: dynamic padding then pads little, and accuracy ignores the order.
    eval_set = eval_set.select(np.argsort([len(s) for s in eval_set["sentence"]], kind="stable"))
    eval_loader = make_dataloader(eval_set, tokenizer, eval_batch_size)
    pretrained = analysis.pretrained_weights(base_model)

    settings = {
        "methods": list(methods), "seeds": [int(s) for s in seeds], "num_epochs": num_epochs, "lr": lr,
        "batch_size": batch_size, "n_train": len(train_set), "n_eval": len(eval_set),
        "checkpoints_per_epoch": checkpoints_per_epoch, "optimizer": "AdamW(weight_decay=0)",
        "model": getattr(base_model.config, "_name_or_path", None) or PACKAGED_MODEL,
        "torch_threads": torch.get_num_threads(), "data_seed": data_seed,
    }  # fmt: skip
    results: dict = {"config": settings, "runs": [], "weights": {"pretrained": pretrained, "checkpoints": {}}}

    for method in methods:
        use_dora = method == "dora"
        lora_config = make_lora_config(use_dora)
        if not isinstance(lora_config, LoraConfig):
            raise LabConfigError(
                f"make_lora_config({use_dora}) returned {type(lora_config).__name__}, not a peft.LoraConfig: run its check cell."
            )
        if bool(lora_config.use_dora) != use_dora:
            raise LabConfigError(
                f"make_lora_config({use_dora}) returned use_dora={lora_config.use_dora}: pass the argument on to LoraConfig."
            )
        for seed in seeds:
            run = _train_one_run(
                method, int(seed), lora_config, train_one_epoch, evaluate_accuracy,
                base_model=base_model, tokenizer=tokenizer, train_set=train_set, eval_loader=eval_loader,
                pretrained=pretrained, num_epochs=num_epochs, lr=lr, batch_size=batch_size,
                checkpoints_per_epoch=checkpoints_per_epoch, keep=keep_weights and seed == seeds[0],
                progress=progress,
            )  # fmt: skip
            kept = run.pop("kept_checkpoints")
            if kept is not None:
                results["weights"]["checkpoints"][method] = {"seed": int(seed), "checkpoints": kept}
            results["runs"].append(run)

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    path.write_text(json.dumps({k: v for k, v in results.items() if k != "weights"}, indent=1) + "\n")
    results["results_file"] = str(path)
    if progress:
        print(f"Wrote {path}")
    return results


def _train_one_run(
    method, seed, lora_config, train_one_epoch, evaluate_accuracy, *, base_model, tokenizer, train_set, eval_loader,
    pretrained, num_epochs, lr, batch_size, checkpoints_per_epoch, keep, progress,
) -> dict:  # fmt: skip
    """Train and evaluate one (method, seed); return its record (and the kept checkpoint weights, or None)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(base_model)
    _reset_head(model, seed)
    # get_peft_model freezes the base model, adds the adapters (PEFT's init: lora_B = 0, lora_A from the
    # seeded generator) and, for SEQ_CLS, makes the new classifier trainable.
    model = get_peft_model(model, copy.deepcopy(lora_config))
    trainable, total = count_parameters(model)
    # No weight decay: decay would pull DoRA's magnitude towards 0 and show up as a magnitude change in Figure 2.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)

    record = {
        "method": method, "seed": seed, "val_accuracy": None, "val_accuracy_per_epoch": [], "train_loss": [],
        "checkpoint_epoch": [], "checkpoint_train_loss": [], "trainable_params": int(trainable), "total_params": int(total),
        "seconds": 0.0, "train_seconds": 0.0, "eval_seconds": 0.0, "lora_config": _config_summary(lora_config),
        "decomposition": {"step": [], "epoch": [], "layer": [], "delta_m": [], "delta_d": []},
    }  # fmt: skip
    kept = [] if keep else None
    rng = np.random.default_rng(seed)
    lengths = np.array([len(sentence) for sentence in train_set["sentence"]])
    step = 0
    for epoch in range(num_epochs):
        order = rng.permutation(len(train_set))
        # Each chunk's batches are random, but of similar-length sentences (less padding: about twice as fast).
        chunks = [
            train_set.select(length_grouped_order(lengths, chunk, batch_size, rng))
            for chunk in np.array_split(order, checkpoints_per_epoch)
        ]
        loaders = [make_dataloader(chunk, tokenizer, batch_size) for chunk in chunks]
        bar = tqdm(total=sum(len(loader) for loader in loaders), desc=f"{method} seed {seed} epoch {epoch + 1}/{num_epochs}",
                   leave=False, disable=not progress)  # fmt: skip
        epoch_loss = 0.0
        for k, loader in enumerate(loaders):
            start = time.perf_counter()
            loss = _student_number(train_one_epoch(model, _Progress(loader, bar), optimizer), "train_one_epoch")
            record["train_seconds"] += time.perf_counter() - start
            step += len(loader)
            epoch_loss += loss * len(loader)
            bar.set_postfix(loss=f"{loss:.3f}")
            record["checkpoint_epoch"].append(epoch + (k + 1) / checkpoints_per_epoch)
            record["checkpoint_train_loss"].append(loss)
            weights = analysis.merged_weights(model)
            for layer, W in weights.items():
                delta_m, delta_d = analysis.magnitude_direction_change(pretrained[layer], W)
                for key, value in (("step", step), ("epoch", record["checkpoint_epoch"][-1]), ("layer", layer),
                                   ("delta_m", delta_m), ("delta_d", delta_d)):  # fmt: skip
                    record["decomposition"][key].append(value)
            if kept is not None:
                kept.append({"step": step, "epoch": record["checkpoint_epoch"][-1], "weights": weights})
        bar.close()
        record["train_loss"].append(epoch_loss / sum(len(loader) for loader in loaders))

        start = time.perf_counter()
        eval_bar = tqdm(eval_loader, desc=f"{method} seed {seed} evaluate", leave=False, disable=not progress)
        accuracy = _student_number(evaluate_accuracy(model, eval_bar), "evaluate_accuracy")
        eval_bar.close()
        record["eval_seconds"] += time.perf_counter() - start
        record["val_accuracy_per_epoch"].append(accuracy)
        if progress:
            print(
                f"{method} seed {seed} epoch {epoch + 1}/{num_epochs}: train loss {record['train_loss'][-1]:.3f}, "
                f"val accuracy {accuracy:.3f} ({record['train_seconds'] + record['eval_seconds']:.0f} s so far)"
            )
    record["val_accuracy"] = record["val_accuracy_per_epoch"][-1]
    record["seconds"] = record["train_seconds"] + record["eval_seconds"]
    if progress:
        print(
            f"{method} seed {seed}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f} %)"
        )
    record["kept_checkpoints"] = kept
    return record


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def summarize(results: Mapping, verbose: bool = True) -> dict[str, dict]:
    """Average the runs of each method over seeds, and print one line per method.

    Args:
        results: what run_comparison returned (or the loaded ex4_results.json).
        verbose: print the table.

    Returns:
        {method: {"seeds", "val_accuracy_mean", "val_accuracy_std", "train_loss_mean", "train_loss_std",
        "trainable_params", "seconds_mean", "seconds_std"}}; std is the sample standard deviation over seeds.
    """
    summary = {}
    for method in dict.fromkeys(run["method"] for run in results["runs"]):
        runs = [run for run in results["runs"] if run["method"] == method]
        accuracy = _mean_std(run["val_accuracy"] for run in runs)
        loss = _mean_std(run["train_loss"][-1] for run in runs)
        seconds = _mean_std(run["seconds"] for run in runs)
        summary[method] = {
            "seeds": [run["seed"] for run in runs],
            "val_accuracy_mean": accuracy[0], "val_accuracy_std": accuracy[1],
            "train_loss_mean": loss[0], "train_loss_std": loss[1],
            "trainable_params": runs[0]["trainable_params"],
            "seconds_mean": seconds[0], "seconds_std": seconds[1],
        }  # fmt: skip
    if verbose:
        print(
            f"{'method':<7}{'seeds':>6}  {'val accuracy':>15}  {'final train loss':>17}  {'trainable params':>17}  {'seconds/run':>12}"
        )
        for method, s in summary.items():
            print(
                f"{method:<7}{len(s['seeds']):>6}  {s['val_accuracy_mean']:>7.3f} ± {s['val_accuracy_std']:.3f}  "
                f"{s['train_loss_mean']:>9.3f} ± {s['train_loss_std']:.3f}  {s['trainable_params']:>17,}  "
                f"{s['seconds_mean']:>6.0f} ± {s['seconds_std']:.0f}"
            )
    return summary


def insights(results: Mapping, trajectory: Mapping | None = None) -> str:
    """Say in plain sentences what this comparison measured: accuracy gap vs seed spread, cost, Figure 2's correlations.

    Args:
        results: what run_comparison returned.
        trajectory: what analysis.decomposition_trajectory returned, or None.

    Returns:
        A few lines of text built from the measured numbers.
    """
    summary = summarize(results, verbose=False)
    lines = []
    for method, s in summary.items():
        lines.append(
            f"- {method.upper()}: validation accuracy {s['val_accuracy_mean']:.3f} ± {s['val_accuracy_std']:.3f} over "
            f"{len(s['seeds'])} seed(s), {s['trainable_params']:,} trainable parameters, {s['seconds_mean']:.0f} s per run."
        )
    if {"lora", "dora"} <= summary.keys():
        lora, dora = summary["lora"], summary["dora"]
        gap = dora["val_accuracy_mean"] - lora["val_accuracy_mean"]
        spread = max(lora["val_accuracy_std"], dora["val_accuracy_std"])
        verdict = (
            "larger than the seed-to-seed spread"
            if spread > 0 and abs(gap) > 2 * spread
            else "within about two seed-to-seed standard deviations: this run cannot separate the methods"
            if spread > 0
            else "measured on one seed only, so its spread is unknown"
        )
        lines.append(f"- DoRA minus LoRA: {100 * gap:+.1f} accuracy points, {verdict}.")
        extra = dora["trainable_params"] - lora["trainable_params"]
        ratio = dora["seconds_mean"] / lora["seconds_mean"] if lora["seconds_mean"] > 0 else math.nan
        lines.append(
            f"- DoRA's cost: {extra:,} more trainable parameters (one magnitude per adapted output feature) and "
            f"{ratio:.2f}x LoRA's time per run."
        )
    if trajectory:
        for method, rows in trajectory.items():
            lines.append(
                f"- Figure 2, {method.upper()}: correlation of ΔD and ΔM = {rows['correlation']:+.2f} over "
                f"{len(rows['delta_m'])} (checkpoint, layer) points (seed {rows['seed']})."
            )
    return "\n".join(lines)
