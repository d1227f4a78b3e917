"""Exercise 4's probes: make_lora_config, and train_one_epoch / evaluate_accuracy on a tiny real BERT classifier.

The training probes run the student's function on a tiny, randomly initialised BertForSequenceClassification (the
architecture of the lab's MiniLM, built in milliseconds) and record what the model went through — the mode and the
autograd state at every forward call, the parameters afterwards, the returned number — never whether that was right.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from labhelpers.probes.core import Observation, Spec, StudentError, call, describe, isolated, reseed

VOCAB_SIZE = 40
SEQUENCE_LENGTH = 7
DROPOUT_SEED_OFFSET = 1000
"""The dropout masks of a run are drawn after reseeding with seed + this (the same for the probe and the judge)."""


def tiny_classifier(seed: int, dropout: float = 0.1) -> nn.Module:
    """Build a randomly initialised 1-layer BertForSequenceClassification (hidden 16, 2 labels) in eval mode."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    config = BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=16, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=2,
    )  # fmt: skip
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with isolated(seed):
            model = BertForSequenceClassification(config)
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval()


def tiny_loader(n_examples: int, batch_size: int, seed: int, labels: torch.Tensor | None = None):
    """Build a DataLoader of padded token batches {input_ids, attention_mask, labels}, the last batch smaller.

    Args:
        n_examples: examples in the dataset.
        batch_size: examples per batch.
        seed: seed of the tokens, lengths and labels.
        labels: (n_examples,) labels to use instead of random ones.
    """
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB_SIZE, (n_examples, SEQUENCE_LENGTH), generator=generator)
    lengths = torch.randint(2, SEQUENCE_LENGTH + 1, (n_examples,), generator=generator)
    attention_mask = (torch.arange(SEQUENCE_LENGTH) < lengths[:, None]).long()
    input_ids = input_ids * attention_mask  # 0 is the padding token
    if labels is None:
        labels = torch.randint(0, 2, (n_examples,), generator=generator)
    examples = [
        {"input_ids": input_ids[i], "attention_mask": attention_mask[i], "labels": labels[i]}
        for i in range(n_examples)
    ]
    return DataLoader(examples, batch_size=batch_size, shuffle=False)


def parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return detached copies of a model's parameters by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class ModeRecorder:
    """Record, at every forward call of a model, whether it was in training mode and whether autograd was on."""

    def __init__(self, model: nn.Module):
        self.training: list[bool] = []
        self.grad_enabled: list[bool] = []
        self._handle = model.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args) -> None:
        self.training.append(module.training)
        self.grad_enabled.append(torch.is_grad_enabled())

    def remove(self) -> None:
        self._handle.remove()


def _record_result(obs: Observation, key: str, result: Any) -> None:
    obs.facts[f"{key}/result"] = describe(result)


# --------------------------------------------------------------------------------------------------
# make_lora_config
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraConfigSpec(Spec):
    """Inputs of check_lora_configs: none but use_dora (False, then True); seeds are unused."""


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Turn a config field into JSON data (sets become sorted lists, enums their value, the rest its repr)."""
    if depth > 4:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (set, frozenset)):
        return sorted(_json_safe(v, depth + 1) for v in value if isinstance(v, (str, int)))
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value][:64]
    if isinstance(value, dict):
        return {str(k)[:100]: _json_safe(v, depth + 1) for k, v in list(value.items())[:64]}
    if hasattr(value, "value") and isinstance(value.value, (str, int)):
        return value.value
    return repr(value)[:200]


def lora_config_probe(make_lora_config: Callable, spec: LoraConfigSpec) -> Observation:
    """Call make_lora_config(False) and (True); record the type and every field of what came back.

    Records, per use_dora value: "use_dora=<b>/result", "use_dora=<b>/type" (module.qualname), "use_dora=<b>/fields"
    (the config's fields as JSON data), or "use_dora=<b>/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for use_dora in (False, True):
            key = f"use_dora={use_dora}"
            try:
                config = call(make_lora_config, use_dora, what=f"make_lora_config({use_dora})")
                obs.facts[f"{key}/result"] = describe(config)
                obs.facts[f"{key}/type"] = f"{type(config).__module__}.{type(config).__qualname__}"
                if obs.facts[f"{key}/type"].endswith("LoraConfig"):
                    what = f"reading the fields of make_lora_config({use_dora})"
                    obs.facts[f"{key}/fields"] = _json_safe(call(lambda c=config: dict(vars(c)), what=what))
            except StudentError as failure:
                obs.error(f"{key}/error", failure)
                break
    return obs


# --------------------------------------------------------------------------------------------------
# train_one_epoch
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainEpochSpec(Spec):
    """Inputs of check_train_one_epoch.

    Attributes:
        seeds: seeds of the tiny model, its data and its dropout.
        n_examples: examples per epoch (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
        lr: AdamW's learning rate (large, so that every mistake shows clearly in the parameters).
    """

    n_examples: int = 10
    batch_size: int = 4
    lr: float = 1e-2

    def validate(self) -> None:
        super().validate()
        if not (1 <= self.batch_size <= self.n_examples <= 256 and self.lr > 0):
            raise ValueError(f"n_examples={self.n_examples}, batch_size={self.batch_size}, lr={self.lr}: out of range")


def train_epoch_start(spec: TrainEpochSpec, seed: int) -> tuple[nn.Module, Any]:
    """Return the tiny model (eval mode) and the loader of one train_one_epoch case."""
    return tiny_classifier(seed), tiny_loader(spec.n_examples, spec.batch_size, seed)


def train_epoch_probe(train_one_epoch: Callable, spec: TrainEpochSpec) -> Observation:
    """Run train_one_epoch(model, loader, AdamW) from the same start as the judge's reference; record what happened.

    Records, per seed key "seed<s>": "/result" (what it returned), "/training" and "/grad_enabled" (per forward
    call), "/batches", "/param/<name>" (every parameter afterwards), or "/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for seed in spec.seeds:
            key = f"seed{seed}"
            start, loader = train_epoch_start(spec, seed)
            model = copy.deepcopy(start)  # in eval mode: train_one_epoch must switch dropout on itself
            recorder = ModeRecorder(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
            obs.facts[f"{key}/batches"] = len(loader)
            reseed(seed + DROPOUT_SEED_OFFSET)
            what = (
                f"train_one_epoch on a tiny BERT classifier ({spec.n_examples} examples, batches of "
                f"{spec.batch_size}, seed {seed})"
            )
            try:
                result = call(train_one_epoch, model, loader, optimizer, what=what)
                _record_result(obs, key, result)
            except StudentError as failure:
                obs.error(f"{key}/error", failure)
            finally:
                recorder.remove()
                obs.facts[f"{key}/training"] = recorder.training
                obs.facts[f"{key}/grad_enabled"] = recorder.grad_enabled
            if f"{key}/error" in obs.facts:
                break
            for name, value in parameters(model).items():
                obs.tensor(f"{key}/param/{name}", value)
    return obs


# --------------------------------------------------------------------------------------------------
# evaluate_accuracy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluateSpec(Spec):
    """Inputs of check_evaluate_accuracy.

    Attributes:
        seeds: seeds of the tiny model and its data.
        n_examples: examples (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
    """

    n_examples: int = 10
    batch_size: int = 4

    def validate(self) -> None:
        super().validate()
        if not (1 <= self.batch_size < self.n_examples <= 256):
            raise ValueError(f"n_examples={self.n_examples}, batch_size={self.batch_size}: out of range")


@dataclass(frozen=True)
class EvaluateCase:
    """A tiny model whose eval-mode accuracy on `loader` is known by construction.

    The labels are chosen from the model's own eval-mode predictions so that the first batch is all right, the last
    all wrong and the rest half right: the fraction of examples, the mean of per-batch accuracies and "correct /
    number of batches" then all differ. Strong dropout (0.5) makes train-mode predictions differ from eval-mode ones.
    """

    seed: int
    model: nn.Module
    loader: Any
    correct: torch.Tensor  # (n_examples,) bool: which examples the eval-mode model gets right


def evaluate_case(spec: EvaluateSpec, seed: int) -> EvaluateCase:
    start = tiny_classifier(seed, dropout=0.5)
    unlabelled = tiny_loader(spec.n_examples, spec.batch_size, seed)
    with torch.no_grad():
        predictions = torch.cat([start(**batch).logits.argmax(dim=-1) for batch in unlabelled])
    correct = torch.zeros(spec.n_examples, dtype=torch.bool)
    n_batches = math.ceil(spec.n_examples / spec.batch_size)
    for b in range(n_batches - 1):
        rows = torch.arange(b * spec.batch_size, min((b + 1) * spec.batch_size, spec.n_examples))
        correct[rows[: len(rows) if b == 0 else len(rows) // 2]] = True
    labels = torch.where(correct, predictions, 1 - predictions)
    return EvaluateCase(seed, start, tiny_loader(spec.n_examples, spec.batch_size, seed, labels=labels), correct)


def evaluate_probe(evaluate_accuracy: Callable, spec: EvaluateSpec) -> Observation:
    """Run evaluate_accuracy(model, loader) on a model that arrives in train mode; record what it did.

    Records, per seed key "seed<s>": "/result", "/training" and "/grad_enabled" (per forward call), "/has_grad"
    (gradients left on parameters), "/param/<name>" (every parameter afterwards), or "/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for seed in spec.seeds:
            key = f"seed{seed}"
            case = evaluate_case(spec, seed)
            model = copy.deepcopy(case.model).train()  # arrives in train mode: evaluate_accuracy must switch it off
            recorder = ModeRecorder(model)
            what = (
                f"evaluate_accuracy on a tiny BERT classifier ({spec.n_examples} examples, batches of "
                f"{spec.batch_size}, seed {seed})"
            )
            reseed(seed + DROPOUT_SEED_OFFSET)
            try:
                _record_result(obs, key, call(evaluate_accuracy, model, case.loader, what=what))
            except StudentError as failure:
                obs.error(f"{key}/error", failure)
            finally:
                recorder.remove()
                obs.facts[f"{key}/training"] = recorder.training
                obs.facts[f"{key}/grad_enabled"] = recorder.grad_enabled
            if f"{key}/error" in obs.facts:
                break
            obs.facts[f"{key}/has_grad"] = any(p.grad is not None for p in model.parameters())
            for name, value in parameters(model).items():
                obs.tensor(f"{key}/param/{name}", value)
    return obs
