"""Exercise 4's probes: make_peft_model, and train_one_epoch / evaluate_accuracy on a tiny real BERT classifier.

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
# make_peft_model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeftModelSpec(Spec):
    """Inputs of check_peft_model: the seeds of the tiny classifiers handed to make_peft_model (use_dora False, True)."""


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


def config_fields(config: Any) -> dict[str, Any]:
    """Return a PEFT config's fields as JSON data (its instance attributes)."""
    return _json_safe(dict(vars(config)))


def model_structure(model: nn.Module) -> dict[str, Any]:
    """Describe a PEFT model as JSON data: its adapted modules, the DoRA ones, and every parameter.

    Returns:
        {"adapted": names of the LoRA/DoRA layers, "magnitudes": names of those with a DoRA magnitude, "params":
        [[name, number of elements, requires_grad], ...]}; names are the module's, without PEFT's prefix.
    """
    from peft.tuners.lora import LoraLayer

    def short(name: str) -> str:
        return name.removeprefix("base_model.model.")

    adapted = [short(n) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    magnitudes = [short(n) for n, m in model.named_modules() if isinstance(m, LoraLayer) and m.lora_magnitude_vector]
    params = [[short(n), int(p.numel()), bool(p.requires_grad)] for n, p in model.named_parameters()]
    return {"adapted": adapted, "magnitudes": magnitudes, "params": params}


def _reached_in_peft(error: BaseException) -> tuple[Any, Any] | None:
    """Find the (model, LoRA config) PEFT was building when PEFT's DoRA layer refused to load; None otherwise.

    In the grading sandbox PEFT's DoRA layer is a stub that raises ReferenceUnavailable, so an honest make_peft_model
    cannot finish with use_dora=True there. The first frame inside PEFT (get_peft_model, or a PeftModel built
    directly) still holds the model and the config it was given: that is what the answer asked PEFT to build.
    """
    if type(error).__name__ != "ReferenceUnavailable":
        return None
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").split(".")[0] == "peft":
            local = frame.f_locals
            config = local.get("peft_config")
            if type(config).__name__ == "LoraConfig" and isinstance(local.get("model"), nn.Module):
                return local["model"], config
            return None
        tb = tb.tb_next
    return None


def _record_peft_model(obs: Observation, key: str, given: nn.Module, result: Any) -> None:
    """Record what make_peft_model returned: its kind and classes and, for a PEFT model, its config and structure."""
    obs.facts[f"{key}/result"] = describe(result)
    obs.facts[f"{key}/classes"] = [f"{c.__module__}.{c.__qualname__}" for c in type(result).__mro__]
    if not hasattr(result, "peft_config") or not isinstance(result, nn.Module):
        return
    what = "reading the PEFT model that make_peft_model returned"
    wrapped = call(lambda: result.get_base_model(), what=what)
    configs = call(lambda: dict(result.peft_config), what=what)
    obs.facts[f"{key}/wraps_given"] = wrapped is given
    obs.facts[f"{key}/configs"] = {str(name): call(config_fields, c, what=what) for name, c in configs.items()}
    obs.facts[f"{key}/structure"] = call(model_structure, result, what=what)


def peft_model_probe(make_peft_model: Callable, spec: PeftModelSpec) -> Observation:
    """Call make_peft_model(tiny classifier, use_dora) for use_dora False and True; record what came back.

    Records, per key "seed<s>/use_dora=<b>": "/result" and "/classes" (what was returned), and for a PEFT model
    "/wraps_given" (it wraps the model given), "/configs" ({adapter: config fields}) and "/structure"
    (model_structure); or, when PEFT's DoRA layer is unavailable (grading), "/reached" ({"wraps_given", "config"}:
    what the answer asked PEFT to build); or "/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for seed in spec.seeds:
            for use_dora in (False, True):
                key = f"seed{seed}/use_dora={use_dora}"
                given = tiny_classifier(seed)
                what = f"make_peft_model(model, use_dora={use_dora}) on a tiny BERT classifier (seed {seed})"
                reseed(seed)
                try:
                    result = call(make_peft_model, given, use_dora, what=what)
                    _record_peft_model(obs, key, given, result)
                except StudentError as failure:
                    reached = _reached_in_peft(failure.error)
                    if reached is None:
                        obs.error(f"{key}/error", failure)
                        return obs
                    obs.facts[f"{key}/reached"] = {
                        "wraps_given": reached[0] is given,
                        "config": config_fields(reached[1]),
                    }
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
