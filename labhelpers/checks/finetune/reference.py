"""Exercise 4's references: the PEFT model and loops the judges compare with, and what the judges share.

The training judges rebuild the probe's tiny BERT classifier from the same seed, run the reference loop (and, to
name a mistake, the loop with that mistake) from the same state with the same dropout masks, and compare what
matters: the parameters afterwards, the returned loss, the accuracy, the modes the model was run in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from labhelpers.checks.core import NUMBER_ATOL, CheckFailed, describe_facts
from labhelpers.checks.messages import verdict
from labhelpers.probes.core import Observation, reseed
from labhelpers.probes.finetune import DROPOUT_SEED_OFFSET, EvaluateSpec, TrainEpochSpec, parameters, train_epoch_start

EXPECTED_LORA_CONFIG = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": {"query", "value"}}


def reference_lora_config(use_dora: bool):
    """Return the configuration Exercise 4 asks for (EXPECTED_LORA_CONFIG, sequence classification) as a LoraConfig."""
    from peft import LoraConfig, TaskType

    settings = {**EXPECTED_LORA_CONFIG, "target_modules": sorted(EXPECTED_LORA_CONFIG["target_modules"])}
    return LoraConfig(task_type=TaskType.SEQ_CLS, use_dora=use_dora, **settings)


def reference_make_peft_model(base_model: nn.Module, use_dora: bool):
    """Wrap `base_model` (in place) with PEFT's LoRA or DoRA adapters of the lab's configuration; return the PeftModel.

    What Exercise 4's make_peft_model asks for, and what `dora-lab tune` trains with.

    Args:
        base_model: a sequence classifier, e.g. from models.load_base_model (adapted in place, not copied).
        use_dora: DoRA (True) or LoRA (False).

    Returns:
        The PeftModel: query/value adapters (rank 8) trainable, the head trainable (modules_to_save), the rest frozen.
    """
    from peft import get_peft_model

    return get_peft_model(base_model, reference_lora_config(use_dora))


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


def returned_number(obs: Observation, key: str, what: str, how: str) -> float:
    """Return the Python number recorded under key, or fail saying what came back instead."""
    facts = obs.facts.get(f"{key}/result")
    if facts is None:
        raise CheckFailed(f"{what} was not run (the check stopped before it).", missing=True)
    if facts["kind"] == "none":
        raise CheckFailed(
            f"{what} returned None: did you forget to return {how}? A function that ends without a return statement "
            f"returns None."
        )
    if facts["kind"] in ("tensor", "parameter"):
        raise CheckFailed(
            verdict(
                f"{what} returned a tensor where a Python float is expected: turn the one-number tensor into a float "
                f"(Tensor.item in PyTorch's documentation), which also lets its computation graph be freed",
                f"Expected a float, got a tensor of shape {tuple(facts['shape'])}",
            )
        )
    if facts["kind"] != "number":
        raise CheckFailed(verdict(f"{what} should return a Python float, {how}", f"Got {describe_facts(facts)}"))
    value = facts["value"]
    if isinstance(value, str) or not math.isfinite(value):
        raise CheckFailed(
            verdict(f"{what} returned a number that is not finite: a division by zero, or an empty loop? It should be "
                    f"{how}", f"Got {value}")
        )  # fmt: skip
    return float(value)


def numbers_agree(a: float, b: float, rtol: float) -> bool:
    """Tell whether a returned number agrees with a reference (relative tolerance, absolute near zero)."""
    return math.isclose(a, b, rel_tol=rtol, abs_tol=NUMBER_ATOL)


def reference_epoch(
    spec: TrainEpochSpec, seed: int, fn: Callable, **kwargs: Any
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run fn(model, loader, optimizer, **kwargs) from the probe's start, with its dropout masks; (result, parameters)."""
    start, loader = train_epoch_start(spec, seed)
    model = copy.deepcopy(start)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    reseed(seed + DROPOUT_SEED_OFFSET)
    result = fn(model, loader, optimizer, **kwargs)
    return result, parameters(model)


@dataclass(frozen=True)
class SeedCase:
    """One seed of a training-loop check: the tiny model and data it builds, and how messages name the call.

    Attributes:
        spec: the check's spec (n_examples, batch_size, lr …).
        seed: the seed of the model, its data and its dropout.
        function: the student's function, e.g. "train_one_epoch".
    """

    spec: TrainEpochSpec | EvaluateSpec
    seed: int
    function: str

    @property
    def key(self) -> str:
        return f"seed{self.seed}"

    @property
    def what(self) -> str:
        return (
            f"{self.function} on a tiny BERT classifier ({self.spec.n_examples} examples, batches of "
            f"{self.spec.batch_size}, seed {self.seed})"
        )
