"""Exercise 4's judges: make_lora_config against PEFT, train_one_epoch and evaluate_accuracy against reference loops.

The training judges rebuild the probe's tiny BERT classifier from the same seed, run the reference loop (and, to
name a mistake, the loop with that mistake) from the same state with the same dropout masks, and compare what
matters: the parameters afterwards, the returned loss, the accuracy, the modes the model was run in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from labhelpers.checks.core import (
    NUMBER_ATOL,
    CheckFailed,
    assert_close,
    describe_facts,
    run_check,
    student_error,
)
from labhelpers.probes.core import Observation, isolated, reseed
from labhelpers.probes.finetune import (
    DROPOUT_SEED_OFFSET,
    EvaluateSpec,
    LoraConfigSpec,
    TrainEpochSpec,
    evaluate_case,
    evaluate_probe,
    lora_config_probe,
    parameters,
    tiny_classifier,
    train_epoch_probe,
    train_epoch_start,
)

EXPECTED_LORA_CONFIG = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": {"query", "value"}}
PEFT_SETTINGS = (
    "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "layers_to_transform",
    "layers_pattern", "modules_to_save", "bias", "use_dora",
)  # fmt: skip
"""The fields of a student's LoraConfig that decide which modules PEFT adapts (the judge rebuilds it from them)."""
PARAMETER_RTOL = 1e-4
"""Relative tolerance of a parameter after one epoch against the reference epoch's (AdamW, float32)."""
PARAMETER_ATOL = 1e-6
LOSS_RTOL = 1e-5
"""Relative tolerance of a returned mean loss (the mean of float32 batch losses)."""
ACCURACY_RTOL = 1e-9
"""Relative tolerance of a returned accuracy (a ratio of counts)."""


# --------------------------------------------------------------------------------------------------
# The references: what train_one_epoch and evaluate_accuracy must do
# --------------------------------------------------------------------------------------------------


def reference_lora_config(use_dora: bool):
    """Return the configuration Exercise 4 asks for (EXPECTED_LORA_CONFIG, sequence classification) as a LoraConfig."""
    from peft import LoraConfig, TaskType

    settings = {**EXPECTED_LORA_CONFIG, "target_modules": sorted(EXPECTED_LORA_CONFIG["target_modules"])}
    return LoraConfig(task_type=TaskType.SEQ_CLS, use_dora=use_dora, **settings)


def reference_train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer) -> float:
    """Train `model` for one pass over `loader`; return the mean batch loss."""
    return sum(train_variant(model, loader, optimizer)) / len(loader)


def reference_evaluate_accuracy(model: nn.Module, loader) -> float:
    """Return the fraction of examples in `loader` whose argmax prediction equals the label."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            predictions = model(**batch).logits.argmax(dim=-1)
            correct += (predictions == batch["labels"]).sum().item()
            total += batch["labels"].numel()
    return correct / total


def train_variant(
    model: nn.Module, loader, optimizer, *, train_mode: bool = True, zero_grad: bool = True
) -> list[float]:
    """The reference epoch, or it with one step left out (model.train() or zero_grad); return the batch losses."""
    if train_mode:
        model.train()
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        if zero_grad:
            optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def _same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[name], b[name], rtol=PARAMETER_RTOL, atol=PARAMETER_ATOL) for name in a)


def _number(obs: Observation, key: str, what: str, how: str) -> float:
    """Return the Python number recorded under key, or fail saying what came back instead."""
    facts = obs.facts.get(f"{key}/result")
    if facts is None:
        raise CheckFailed(f"{what} was not run (the check stopped before it).", missing=True)
    if facts["kind"] == "none":
        raise CheckFailed(f"{what} returned None: did you forget `return {how}`?")
    if facts["kind"] in ("tensor", "parameter"):
        raise CheckFailed(
            f"{what} returned a tensor of shape {tuple(facts['shape'])}, expected a Python float: convert with .item() "
            f"(e.g. `loss.item()`), which also lets the computation graph be freed."
        )
    if facts["kind"] != "number":
        raise CheckFailed(f"{what} returned {describe_facts(facts)}, expected a Python float ({how}).")
    value = facts["value"]
    if isinstance(value, str) or not math.isfinite(value):
        raise CheckFailed(f"{what} returned {value}: a division by zero or an empty loop? It should be {how}.")
    return float(value)


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=NUMBER_ATOL)


# --------------------------------------------------------------------------------------------------
# make_lora_config
# --------------------------------------------------------------------------------------------------


def judge_lora_configs(spec: LoraConfigSpec, obs: Observation) -> str:
    """Judge make_lora_config's configs against the lab's settings, and that PEFT builds a model from each."""
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.lora import LoraLayer

    for use_dora in (False, True):
        key, what = f"use_dora={use_dora}", f"make_lora_config({use_dora})"
        student_error(obs, f"{key}/error")
        result = obs.facts.get(f"{key}/result")
        if result is None:
            raise CheckFailed(f"{what} was not run (the check stopped before it).")
        if result["kind"] == "none":
            raise CheckFailed(f"{what} returned None: did you forget `return LoraConfig(...)`?")
        if obs.facts.get(f"{key}/type") != "peft.tuners.lora.config.LoraConfig":
            raise CheckFailed(
                f"{what} returned {describe_facts(result)}, expected a peft.LoraConfig: `return LoraConfig(...)`."
            )
        fields: dict[str, Any] = obs.facts.get(f"{key}/fields") or {}
        task_type = fields.get("task_type")
        if task_type != TaskType.SEQ_CLS.value:
            raise CheckFailed(
                f"{what} has task_type={task_type!r}, expected TaskType.SEQ_CLS: sequence classification also makes "
                f"PEFT train the new classification head (modules_to_save)."
            )
        for name in ("r", "lora_alpha", "lora_dropout"):
            value, expected = fields.get(name), EXPECTED_LORA_CONFIG[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isclose(value, expected):
                raise CheckFailed(f"{what} has {name}={value!r}, expected {name}={expected}.")
        targets = fields.get("target_modules")
        targets = {targets} if isinstance(targets, str) else set(targets or ())
        if targets != EXPECTED_LORA_CONFIG["target_modules"]:
            raise CheckFailed(
                f"{what} has target_modules={fields.get('target_modules')!r}, expected ['query', 'value']: the attention "
                f"projections named query and value in every BERT layer."
            )
        if fields.get("use_dora") is not use_dora:
            raise CheckFailed(
                f"{what} has use_dora={fields.get('use_dora')!r}, expected {use_dora}: pass the argument on, "
                f"LoraConfig(..., use_dora=use_dora)."
            )
        # PEFT builds the model from the same settings here, outside the student's process.
        settings = {name: fields[name] for name in PEFT_SETTINGS if fields.get(name) is not None}
        try:
            model = get_peft_model(tiny_classifier(seed=0), LoraConfig(**settings))
        except (TypeError, ValueError) as error:
            raise CheckFailed(f"PEFT cannot build a model from {what}: {type(error).__name__}: {error}") from None
        adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)}
        if adapted != EXPECTED_LORA_CONFIG["target_modules"]:
            raise CheckFailed(
                f"get_peft_model with {what} adapted {sorted(adapted)}, expected query and value: check target_modules."
            )
    return "SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, query/value, use_dora as asked; PEFT builds both"


def check_lora_configs(make_lora_config: Callable) -> None:
    """Check make_lora_config(use_dora) -> LoraConfig for LoRA and DoRA, and that PEFT builds a model from it.

    Args:
        make_lora_config: the student's function.
    """
    __tracebackhide__ = True
    run_check("make_lora_config", lora_config_probe, judge_lora_configs, make_lora_config, LoraConfigSpec.make())


# --------------------------------------------------------------------------------------------------
# train_one_epoch
# --------------------------------------------------------------------------------------------------


def _reference_epoch(
    spec: TrainEpochSpec, seed: int, fn: Callable, **kwargs: Any
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run fn(model, loader, optimizer, **kwargs) from the probe's start with its dropout masks; (result, parameters)."""
    start, loader = train_epoch_start(spec, seed)
    model = copy.deepcopy(start)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    reseed(seed + DROPOUT_SEED_OFFSET)
    result = fn(model, loader, optimizer, **kwargs)
    return result, parameters(model)


def judge_train_one_epoch(spec: TrainEpochSpec, obs: Observation) -> str:
    """Judge train_one_epoch's observations against the reference epoch; return a pass summary or raise CheckFailed."""
    with isolated():
        for seed in spec.seeds:
            key = f"seed{seed}"
            what = (
                f"train_one_epoch on a tiny BERT classifier ({spec.n_examples} examples, batches of {spec.batch_size}, "
                f"seed {seed})"
            )
            training = obs.facts.get(f"{key}/training") or []
            grad_enabled = obs.facts.get(f"{key}/grad_enabled") or []
            if f"{key}/error" in obs.facts:
                if grad_enabled and not all(grad_enabled):
                    raise CheckFailed(
                        f"{what} ran the model with gradients switched off, so loss.backward() failed: no "
                        f"torch.no_grad() (or inference_mode) around the training forward pass.",
                        cause=f"{key}/error",
                    )
                student_error(obs, f"{key}/error")
            if f"{key}/result" not in obs.facts:
                raise CheckFailed(f"{what} was not run (the check stopped before it).")
            batches = obs.facts[f"{key}/batches"]
            if not training:
                raise CheckFailed(
                    f"{what} never called the model: for each batch compute `loss = model(**batch).loss`."
                )
            if len(training) != batches:
                raise CheckFailed(
                    f"{what} called the model {len(training)} times for {batches} batches: one forward pass per batch, "
                    f"`for batch in loader: loss = model(**batch).loss`."
                )
            if not all(training):
                raise CheckFailed(
                    f"{what} ran the model in evaluation mode (dropout off): call model.train() at the start of the "
                    f"epoch (the model may arrive in eval mode, e.g. after evaluate_accuracy)."
                )
            if not all(grad_enabled):
                raise CheckFailed(f"{what} ran the model with gradients switched off: no torch.no_grad() in training.")
            start, _ = train_epoch_start(spec, seed)
            initial = parameters(start)
            params = {}
            for name in initial:
                value = obs.tensors.get(f"{key}/param/{name}")
                if value is None or value.shape != initial[name].shape:
                    raise CheckFailed(
                        f"{what} changed the model's structure: parameter {name} is missing or reshaped."
                    )
                params[name] = value
            if all(torch.equal(params[name], p) for name, p in initial.items()):
                raise CheckFailed(
                    f"{what} left every parameter unchanged: after `loss.backward()` call `optimizer.step()` for every batch."
                )
            ref_loss, ref_params = _reference_epoch(spec, seed, reference_train_one_epoch)
            if not _same_parameters(params, ref_params):
                _, accumulated = _reference_epoch(spec, seed, train_variant, zero_grad=False)
                if _same_parameters(params, accumulated):
                    raise CheckFailed(
                        f"the parameters after {what} match an epoch without optimizer.zero_grad(): gradients add up "
                        f"across batches unless you clear them; call optimizer.zero_grad() after optimizer.step() (or "
                        f"before loss.backward())."
                    )
                name = max(params, key=lambda n: float((params[n] - ref_params[n]).abs().max()))
                assert_close(
                    params[name], ref_params[name], f"parameter {name} after {what}",
                    hint="Each batch should do exactly: loss = model(**batch).loss; loss.backward(); optimizer.step(); "
                    "optimizer.zero_grad().",
                )  # fmt: skip
            loss = _number(obs, key, what, "the mean of the batch losses")
            losses, _ = _reference_epoch(spec, seed, train_variant)
            sizes = [min(spec.batch_size, spec.n_examples - i) for i in range(0, spec.n_examples, spec.batch_size)]
            by_example = sum(x * n for x, n in zip(losses, sizes, strict=True)) / sum(sizes)
            if _close(loss, ref_loss, LOSS_RTOL) or _close(loss, by_example, LOSS_RTOL):
                continue
            mistakes = [
                (losses[-1], "the loss of the last batch: collect every batch's loss.item() and return their mean"),
                (sum(losses), "the sum of the batch losses: divide by the number of batches to get the mean"),
                (losses[0], "the loss of the first batch: did you `return` inside the loop?"),
                (sum(losses) / spec.n_examples, "the sum of batch losses divided by the number of examples: each "
                 "batch loss is already a mean over its examples, so divide by the number of batches"),
            ]  # fmt: skip
            for value, message in mistakes:
                if _close(loss, value, LOSS_RTOL):
                    raise CheckFailed(
                        f"{what} returned {loss:.6g}, expected the mean batch loss {ref_loss:.6g}; you returned {message}."
                    )
            raise CheckFailed(
                f"{what} returned {loss:.6g}, expected the mean batch loss {ref_loss:.6g} (batch losses "
                f"{', '.join(f'{x:.4g}' for x in losses)}): return sum(losses) / len(losses) with losses.append(loss.item())."
            )
    return (
        f"{len(spec.seeds)} tiny model(s): train mode, one step per batch, gradients cleared, same parameters and mean "
        f"loss as the reference"
    )


def check_train_one_epoch(
    train_one_epoch: Callable,
    seeds: Sequence[int] = TrainEpochSpec.seeds,
    n_examples: int = TrainEpochSpec.n_examples,
    batch_size: int = TrainEpochSpec.batch_size,
    lr: float = TrainEpochSpec.lr,
) -> None:
    """Check train_one_epoch(model, loader, optimizer) against the reference epoch from the same state and seed.

    Args:
        train_one_epoch: the student's function.
        seeds: seeds of the tiny model, its data and its dropout.
        n_examples: examples per epoch (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
        lr: AdamW's learning rate (large, so that every mistake shows clearly in the parameters).
    """
    __tracebackhide__ = True
    spec = TrainEpochSpec.make(seeds=seeds, n_examples=n_examples, batch_size=batch_size, lr=lr)
    run_check("train_one_epoch", train_epoch_probe, judge_train_one_epoch, train_one_epoch, spec)


# --------------------------------------------------------------------------------------------------
# evaluate_accuracy
# --------------------------------------------------------------------------------------------------


def judge_evaluate_accuracy(spec: EvaluateSpec, obs: Observation) -> str:
    """Judge evaluate_accuracy's observations against the accuracy known by construction."""
    with isolated():
        for seed in spec.seeds:
            key = f"seed{seed}"
            what = (
                f"evaluate_accuracy on a tiny BERT classifier ({spec.n_examples} examples, batches of {spec.batch_size}, "
                f"seed {seed})"
            )
            training = obs.facts.get(f"{key}/training") or []
            grad_enabled = obs.facts.get(f"{key}/grad_enabled") or []
            student_error(obs, f"{key}/error")
            if f"{key}/result" not in obs.facts:
                raise CheckFailed(f"{what} was not run (the check stopped before it).")
            if not training:
                raise CheckFailed(
                    f"{what} never called the model: predict with `model(**batch).logits.argmax(dim=-1)`."
                )
            if any(training):
                raise CheckFailed(
                    f"{what} ran the model in training mode (dropout on, random predictions): call model.eval() first."
                )
            if any(grad_enabled):
                raise CheckFailed(
                    f"{what} ran the model with gradient tracking on: wrap the loop in `with torch.no_grad():` "
                    f"(evaluation needs no gradients; tracking them wastes memory and time)."
                )
            start = parameters(evaluate_case(spec, seed).model)
            if obs.facts.get(f"{key}/has_grad") or not all(
                f"{key}/param/{name}" in obs.tensors and torch.equal(obs.tensors[f"{key}/param/{name}"], value)
                for name, value in start.items()
            ):
                raise CheckFailed(
                    f"{what} changed the model or its gradients: evaluation must not train (no backward, no step)."
                )
            accuracy = _number(obs, key, what, "the fraction of examples predicted correctly")
            case = evaluate_case(spec, seed)
            expected = reference_evaluate_accuracy(copy.deepcopy(case.model), case.loader)
            if _close(accuracy, expected, ACCURACY_RTOL):
                continue
            correct = case.correct
            sizes = [len(batch["labels"]) for batch in case.loader]
            bounds = [sum(sizes[:b]) for b in range(len(sizes) + 1)]
            per_batch = [float(correct[bounds[b] : bounds[b + 1]].float().mean()) for b in range(len(sizes))]
            n_correct = int(correct.sum())
            mistakes = [
                (100 * expected, "a percentage: return the fraction (between 0 and 1), without multiplying by 100"),
                (n_correct / len(sizes), "the number of correct predictions divided by the number of batches: divide "
                 "by the number of examples, e.g. total += batch['labels'].numel()"),
                (sum(per_batch) / len(per_batch), "the mean of the per-batch accuracies, which counts the smaller "
                 "last batch as much as a full one: count correct predictions and examples over all batches, then divide"),
                (float(n_correct), "the number of correct predictions: divide by the number of examples"),
                (1 - expected, "the fraction of wrong predictions: compare predictions == labels"),
                (per_batch[-1], "the accuracy of the last batch only: accumulate over every batch"),
            ]  # fmt: skip
            for value, message in mistakes:
                if _close(accuracy, value, ACCURACY_RTOL):
                    raise CheckFailed(
                        f"{what} returned {accuracy:.6g}, expected {expected:.6g}; you returned {message}."
                    )
            raise CheckFailed(
                f"{what} returned {accuracy:.6g}, expected {expected:.6g} ({n_correct} of {spec.n_examples} examples "
                f"right): predict model(**batch).logits.argmax(dim=-1), compare with batch['labels'], and divide the "
                f"number correct by the number of examples."
            )
    return (
        f"{len(spec.seeds)} tiny model(s): eval mode, no gradients, fraction of examples correct over batches of "
        f"unequal size"
    )


def check_evaluate_accuracy(
    evaluate_accuracy: Callable,
    seeds: Sequence[int] = EvaluateSpec.seeds,
    n_examples: int = EvaluateSpec.n_examples,
    batch_size: int = EvaluateSpec.batch_size,
) -> None:
    """Check evaluate_accuracy(model, loader) on a tiny BERT classifier whose accuracy is known by construction.

    Args:
        evaluate_accuracy: the student's function.
        seeds: seeds of the tiny model and its data.
        n_examples: examples (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
    """
    __tracebackhide__ = True
    spec = EvaluateSpec.make(seeds=seeds, n_examples=n_examples, batch_size=batch_size)
    run_check("evaluate_accuracy", evaluate_probe, judge_evaluate_accuracy, evaluate_accuracy, spec)
