"""Checks of Exercises 4–5 (make_lora_config, train_one_epoch, evaluate_accuracy, magnitude_direction_change).

The training checks run the student's function and a reference on a tiny, randomly initialised BERT classifier
(the same architecture as the lab's MiniLM, seconds to build) from the same state and the same random seed,
and compare what matters: the resulting parameters, the returned loss, the accuracy. Recognised mistakes
(model.train()/model.eval(), zero_grad, no_grad, last loss instead of the mean, batches instead of examples)
each get their own message.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

import torch
from torch import nn

from labhelpers.analysis import magnitude_direction_change as _reference_magnitude_direction_change
from labhelpers.checks.core import assert_close, call_student, passed

EXPECTED_LORA_CONFIG = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": {"query", "value"}}

# --------------------------------------------------------------------------------------------------
# The references (what train_one_epoch and evaluate_accuracy must do)
# --------------------------------------------------------------------------------------------------


def _reference_train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer) -> float:
    """Train `model` for one pass over `loader`; return the mean batch loss."""
    model.train()
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def _reference_evaluate_accuracy(model: nn.Module, loader) -> float:
    """Return the fraction of examples in `loader` whose argmax prediction equals the label."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            predictions = model(**batch).logits.argmax(dim=-1)
            correct += (predictions == batch["labels"]).sum().item()
            total += batch["labels"].numel()
    return correct / total


def _train_variant(
    model: nn.Module, loader, optimizer, *, train_mode: bool = True, zero_grad: bool = True
) -> list[float]:
    """The reference epoch with one step left out (model.train() or zero_grad); return the batch losses."""
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


# --------------------------------------------------------------------------------------------------
# A tiny real model and loader
# --------------------------------------------------------------------------------------------------

VOCAB_SIZE = 40
SEQUENCE_LENGTH = 7


def _tiny_classifier(seed: int, dropout: float = 0.1) -> nn.Module:
    """Build a randomly initialised 1-layer BertForSequenceClassification (hidden 16, 2 labels) in eval mode."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    config = BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=16, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = BertForSequenceClassification(config)
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval()


def _tiny_loader(n_examples: int, batch_size: int, seed: int, labels: torch.Tensor | None = None):
    """Build a DataLoader of padded token batches {input_ids, attention_mask, labels}, last batch smaller.

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


class _ModeRecorder:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _expect_number(value: Any, what: str, how: str) -> float:
    """Check that value is a plain Python/NumPy number (not a tensor, not None) and return it as float."""
    if value is None:
        raise AssertionError(f"{what} returned None: did you forget `return {how}`?")
    if isinstance(value, torch.Tensor):
        raise AssertionError(
            f"{what} returned a tensor of shape {tuple(value.shape)}, expected a Python float: "
            f"convert with .item() (e.g. `loss.item()`), which also lets the computation graph be freed."
        )
    if not _is_number(value):
        raise AssertionError(f"{what} returned a {type(value).__name__}, expected a Python float ({how}).")
    value = float(value)
    if not math.isfinite(value):
        raise AssertionError(f"{what} returned {value}: a division by zero or an empty loop? It should be {how}.")
    return value


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6) for name in a)


# --------------------------------------------------------------------------------------------------
# Exercise 4: make_lora_config
# --------------------------------------------------------------------------------------------------


def check_lora_configs(make_lora_config: Callable) -> None:
    """Check make_lora_config(use_dora) -> LoraConfig for LoRA and DoRA, and that PEFT builds a model from it.

    Args:
        make_lora_config: the student's function.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.lora import LoraLayer

    for use_dora in (False, True):
        what = f"make_lora_config({use_dora})"
        config = call_student(make_lora_config, use_dora, what=what)
        if config is None:
            raise AssertionError(f"{what} returned None: did you forget `return LoraConfig(...)`?")
        if not isinstance(config, LoraConfig):
            raise AssertionError(
                f"{what} returned a {type(config).__name__}, expected a peft.LoraConfig: `return LoraConfig(...)`."
            )
        task_type = getattr(config.task_type, "value", config.task_type)
        if task_type != TaskType.SEQ_CLS.value:
            raise AssertionError(
                f"{what} has task_type={config.task_type!r}, expected TaskType.SEQ_CLS: sequence classification "
                f"also makes PEFT train the new classification head (modules_to_save)."
            )
        for name in ("r", "lora_alpha", "lora_dropout"):
            value, expected = getattr(config, name), EXPECTED_LORA_CONFIG[name]
            if not _is_number(value) or not math.isclose(value, expected):
                raise AssertionError(f"{what} has {name}={value!r}, expected {name}={expected}.")
        targets = config.target_modules
        targets = {targets} if isinstance(targets, str) else set(targets or ())
        if targets != EXPECTED_LORA_CONFIG["target_modules"]:
            raise AssertionError(
                f"{what} has target_modules={config.target_modules!r}, expected ['query', 'value']: "
                f"the attention projections named query and value in every BERT layer."
            )
        if config.use_dora is not use_dora:
            raise AssertionError(
                f"{what} has use_dora={config.use_dora!r}, expected {use_dora}: pass the argument on, "
                f"LoraConfig(..., use_dora=use_dora)."
            )
        model = call_student(
            get_peft_model, _tiny_classifier(seed=0), copy.deepcopy(config), what=f"get_peft_model with {what}"
        )
        adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)}
        if adapted != EXPECTED_LORA_CONFIG["target_modules"]:
            raise AssertionError(
                f"get_peft_model with {what} adapted {sorted(adapted)}, expected query and value: check target_modules."
            )
    passed(
        "make_lora_config",
        "SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, query/value, use_dora as asked; PEFT builds both",
    )


# --------------------------------------------------------------------------------------------------
# Exercise 4: train_one_epoch
# --------------------------------------------------------------------------------------------------


def check_train_one_epoch(
    train_one_epoch: Callable,
    seeds: Sequence[int] = (0,),
    n_examples: int = 10,
    batch_size: int = 4,
    lr: float = 1e-2,
) -> None:
    """Check train_one_epoch(model, loader, optimizer) against the reference epoch from the same state and seed.

    Args:
        train_one_epoch: the student's function.
        seeds: seeds of the tiny model, its data and its dropout.
        n_examples: examples per epoch (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
        lr: AdamW's learning rate (large, so that every mistake shows clearly in the parameters).
    """
    for seed in seeds:
        what = (
            f"train_one_epoch on a tiny BERT classifier ({n_examples} examples, batches of {batch_size}, seed {seed})"
        )
        start = _tiny_classifier(seed)
        loader = _tiny_loader(n_examples, batch_size, seed)

        def run(fn: Callable, **kwargs) -> tuple[Any, dict[str, torch.Tensor], nn.Module]:
            model = copy.deepcopy(start)  # in eval mode: train_one_epoch must switch dropout on itself
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
            torch.manual_seed(seed + 1000)  # the same dropout masks for every run
            result = fn(model, loader, optimizer, **kwargs)
            return result, _parameters(model), model

        ref_loss, ref_params, _ = run(_reference_train_one_epoch)
        student = copy.deepcopy(start)
        recorder = _ModeRecorder(student)
        optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
        torch.manual_seed(seed + 1000)
        try:
            result = call_student(train_one_epoch, student, loader, optimizer, what=what)
        except AssertionError as error:
            if recorder.grad_enabled and not all(recorder.grad_enabled):
                raise AssertionError(
                    f"{what} ran the model with gradients switched off, so loss.backward() failed: "
                    f"no torch.no_grad() (or inference_mode) around the training forward pass."
                ) from error
            raise
        finally:
            recorder.remove()
        params = _parameters(student)

        if not recorder.training:
            raise AssertionError(
                f"{what} never called the model: for each batch compute `loss = model(**batch).loss`."
            )
        if len(recorder.training) != len(loader):
            raise AssertionError(
                f"{what} called the model {len(recorder.training)} times for {len(loader)} batches: "
                f"one forward pass per batch, `for batch in loader: loss = model(**batch).loss`."
            )
        if not all(recorder.training):
            raise AssertionError(
                f"{what} ran the model in evaluation mode (dropout off): call model.train() at the start of the "
                f"epoch (the model may arrive in eval mode, e.g. after evaluate_accuracy)."
            )
        if not all(recorder.grad_enabled):
            raise AssertionError(f"{what} ran the model with gradients switched off: no torch.no_grad() in training.")
        if all(torch.equal(params[name], p) for name, p in _parameters(start).items()):
            raise AssertionError(
                f"{what} left every parameter unchanged: after `loss.backward()` call `optimizer.step()` for every batch."
            )
        if not _same_parameters(params, ref_params):
            _, accumulated, _ = run(_train_variant, zero_grad=False)
            if _same_parameters(params, accumulated):
                raise AssertionError(
                    f"the parameters after {what} match an epoch without optimizer.zero_grad(): gradients add up "
                    f"across batches unless you clear them; call optimizer.zero_grad() after optimizer.step() "
                    f"(or before loss.backward())."
                )
            name = max(params, key=lambda n: float((params[n] - ref_params[n]).abs().max()))
            assert_close(
                params[name], ref_params[name], f"parameter {name} after {what}",
                hint="Each batch should do exactly: loss = model(**batch).loss; loss.backward(); optimizer.step(); "
                "optimizer.zero_grad().",
            )  # fmt: skip

        loss = _expect_number(result, what, "the mean of the batch losses")
        losses = _batch_losses(start, loader, lr, seed)
        sizes = [len(batch["labels"]) for batch in loader]
        by_example = sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)
        if math.isclose(loss, ref_loss, rel_tol=1e-5, abs_tol=1e-6) or math.isclose(
            loss, by_example, rel_tol=1e-5, abs_tol=1e-6
        ):
            continue
        mistakes = [
            (losses[-1], "the loss of the last batch: collect every batch's loss.item() and return their mean"),
            (sum(losses), "the sum of the batch losses: divide by the number of batches to get the mean"),
            (losses[0], "the loss of the first batch: did you `return` inside the loop?"),
            (sum(losses) / n_examples, "the sum of batch losses divided by the number of examples: each batch loss is "
             "already a mean over its examples, so divide by the number of batches"),
        ]  # fmt: skip
        for value, message in mistakes:
            if math.isclose(loss, value, rel_tol=1e-5, abs_tol=1e-6):
                raise AssertionError(
                    f"{what} returned {loss:.6g}, expected the mean batch loss {ref_loss:.6g}; you returned {message}."
                )
        raise AssertionError(
            f"{what} returned {loss:.6g}, expected the mean batch loss {ref_loss:.6g} (batch losses "
            f"{', '.join(f'{l:.4g}' for l in losses)}): return sum(losses) / len(losses) with losses.append(loss.item())."
        )
    passed(
        "train_one_epoch",
        f"{len(seeds)} tiny model(s): train mode, one step per batch, gradients cleared, same parameters and mean loss as the reference",
    )


def _batch_losses(start: nn.Module, loader, lr: float, seed: int) -> list[float]:
    """The reference epoch's batch losses from `start` with the checks' dropout seed."""
    model = copy.deepcopy(start)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    torch.manual_seed(seed + 1000)
    return _train_variant(model, loader, optimizer)


# --------------------------------------------------------------------------------------------------
# Exercise 4: evaluate_accuracy
# --------------------------------------------------------------------------------------------------


def check_evaluate_accuracy(
    evaluate_accuracy: Callable,
    seeds: Sequence[int] = (0,),
    n_examples: int = 10,
    batch_size: int = 4,
) -> None:
    """Check evaluate_accuracy(model, loader) on a tiny BERT classifier whose accuracy is known by construction.

    The labels are chosen from the model's own eval-mode predictions so that the first batch is all right, the
    last all wrong and the rest half right: the fraction of examples, the mean of per-batch accuracies and
    "correct / number of batches" then all differ.

    Args:
        evaluate_accuracy: the student's function.
        seeds: seeds of the tiny model and its data.
        n_examples: examples (not a multiple of batch_size, so that the last batch is smaller).
        batch_size: examples per batch.
    """
    for seed in seeds:
        what = f"evaluate_accuracy on a tiny BERT classifier ({n_examples} examples, batches of {batch_size}, seed {seed})"
        # Strong dropout: predictions made in train mode differ from eval-mode ones.
        start = _tiny_classifier(seed, dropout=0.5)
        unlabelled = _tiny_loader(n_examples, batch_size, seed)
        with torch.no_grad():
            predictions = torch.cat([start(**batch).logits.argmax(dim=-1) for batch in unlabelled])
        correct = torch.zeros(n_examples, dtype=torch.bool)
        n_batches = math.ceil(n_examples / batch_size)
        for b in range(n_batches - 1):
            rows = torch.arange(b * batch_size, min((b + 1) * batch_size, n_examples))
            correct[rows[: len(rows) if b == 0 else len(rows) // 2]] = True
        labels = torch.where(correct, predictions, 1 - predictions)
        loader = _tiny_loader(n_examples, batch_size, seed, labels=labels)
        expected = _reference_evaluate_accuracy(copy.deepcopy(start), loader)

        model = copy.deepcopy(start).train()  # arrives in train mode: evaluate_accuracy must switch dropout off
        recorder = _ModeRecorder(model)
        before = _parameters(model)
        try:
            torch.manual_seed(seed + 1000)
            result = call_student(evaluate_accuracy, model, loader, what=what)
        finally:
            recorder.remove()

        if not recorder.training:
            raise AssertionError(
                f"{what} never called the model: predict with `model(**batch).logits.argmax(dim=-1)`."
            )
        if any(recorder.training):
            raise AssertionError(
                f"{what} ran the model in training mode (dropout on, random predictions): call model.eval() first."
            )
        if any(recorder.grad_enabled):
            raise AssertionError(
                f"{what} ran the model with gradient tracking on: wrap the loop in `with torch.no_grad():` "
                f"(evaluation needs no gradients; tracking them wastes memory and time)."
            )
        if any(p.grad is not None for p in model.parameters()) or not all(
            torch.equal(before[n], p) for n, p in model.named_parameters()
        ):
            raise AssertionError(
                f"{what} changed the model or its gradients: evaluation must not train (no backward, no step)."
            )
        accuracy = _expect_number(result, what, "the fraction of examples predicted correctly")
        if math.isclose(accuracy, expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        sizes = [len(batch["labels"]) for batch in loader]
        per_batch = [float(correct[sum(sizes[:b]) : sum(sizes[: b + 1])].float().mean()) for b in range(len(sizes))]
        n_correct = int(correct.sum())
        mistakes = [
            (100 * expected, "a percentage: return the fraction (between 0 and 1), without multiplying by 100"),
            (n_correct / len(sizes), "the number of correct predictions divided by the number of batches: divide by "
             "the number of examples, e.g. total += batch['labels'].numel()"),
            (sum(per_batch) / len(per_batch), "the mean of the per-batch accuracies, which counts the smaller last "
             "batch as much as a full one: count correct predictions and examples over all batches, then divide"),
            (float(n_correct), "the number of correct predictions: divide by the number of examples"),
            (1 - expected, "the fraction of wrong predictions: compare predictions == labels"),
            (per_batch[-1], "the accuracy of the last batch only: accumulate over every batch"),
        ]  # fmt: skip
        for value, message in mistakes:
            if math.isclose(accuracy, value, rel_tol=1e-9, abs_tol=1e-12):
                raise AssertionError(
                    f"{what} returned {accuracy:.6g}, expected {expected:.6g}; you returned {message}."
                )
        raise AssertionError(
            f"{what} returned {accuracy:.6g}, expected {expected:.6g} ({n_correct} of {n_examples} examples right): "
            f"predict model(**batch).logits.argmax(dim=-1), compare with batch['labels'], and divide the number "
            f"correct by the number of examples."
        )
    passed(
        "evaluate_accuracy",
        f"{len(seeds)} tiny model(s): eval mode, no gradients, fraction of examples correct over batches of unequal size",
    )


# --------------------------------------------------------------------------------------------------
# Exercise 5: magnitude_direction_change
# --------------------------------------------------------------------------------------------------


def _changed_weight(W0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return W0 with every row turned by a random amount and rescaled up or down (some rows grow, some shrink)."""
    out_features = W0.shape[0]
    noise = torch.randn(W0.shape, generator=generator, dtype=torch.float64).to(W0.dtype)
    turn = 0.2 + 0.6 * torch.rand(out_features, 1, generator=generator, dtype=torch.float64).to(W0.dtype)
    norms = torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    turned = W0 + turn * noise * norms / math.sqrt(W0.shape[1])
    scale = torch.linspace(0.6, 1.5, out_features, dtype=torch.float64).to(W0.dtype)[:, None]
    return scale * turned * norms / torch.linalg.vector_norm(turned, dim=1, keepdim=True)


def _unpack_pair(result: Any, what: str) -> tuple[float, float]:
    if result is None:
        raise AssertionError(f"{what} returned None: did you forget `return delta_m, delta_d`?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = (
            f"a tensor of shape {tuple(result.shape)}"
            if isinstance(result, torch.Tensor)
            else f"a {type(result).__name__}"
        )
        raise AssertionError(f"{what} should return two floats, `return delta_m, delta_d`, but returned {got}.")
    values = []
    for name, value in zip(("delta_m", "delta_d"), result):
        if isinstance(value, torch.Tensor):
            raise AssertionError(
                f"{name} returned by {what} is a tensor of shape {tuple(value.shape)}, expected a Python float: "
                f"reduce it to one number (.mean()) and convert it with .item()."
            )
        if not _is_number(value):
            raise AssertionError(f"{name} returned by {what} is a {type(value).__name__}, expected a Python float.")
        values.append(float(value))
    return values[0], values[1]


def check_magnitude_direction_change(
    magnitude_direction_change: Callable,
    shapes: Sequence[Sequence[int]] = ((12, 7), (5, 20)),
    seeds: Sequence[int] = (0,),
    dtypes: Sequence[torch.dtype] = (torch.float64, torch.float32),
) -> None:
    """Check magnitude_direction_change(W0, W) -> (delta_m, delta_d) against the paper's §3.2 measure.

    Args:
        magnitude_direction_change: the student's function.
        shapes: weight shapes (out_features, in_features); non-square, so that rows and columns differ.
        seeds: seeds of the weights.
        dtypes: dtypes of the weights.
    """
    n_checks = 0
    for shape, seed, dtype in product(shapes, seeds, dtypes):
        generator = torch.Generator().manual_seed(seed)
        W0 = torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)
        W = _changed_weight(W0, generator)
        what = f"magnitude_direction_change(W0, W) with weights of shape {tuple(shape)}, {str(dtype).removeprefix('torch.')}"
        W0_before, W_before = W0.clone(), W.clone()
        delta_m, delta_d = _unpack_pair(call_student(magnitude_direction_change, W0, W, what=what), what)
        if not (torch.equal(W0, W0_before) and torch.equal(W, W_before)):
            raise AssertionError(
                f"{what} modified W0 or W in place: compute new tensors instead (no /=, .div_(), [...] =)."
            )
        expected_m, expected_d = _reference_magnitude_direction_change(W0, W)
        rtol = 1e-6 if dtype == torch.float64 else 1e-4
        ok_m = math.isclose(delta_m, expected_m, rel_tol=rtol, abs_tol=1e-9)
        ok_d = math.isclose(delta_d, expected_d, rel_tol=rtol, abs_tol=1e-9)
        if ok_m and ok_d:
            n_checks += 1
            continue
        column_m, column_d = _reference_magnitude_direction_change(W0.T, W.T)
        if math.isclose(delta_m, expected_d, rel_tol=rtol) and math.isclose(delta_d, expected_m, rel_tol=rtol):
            raise AssertionError(
                f"{what} returned (ΔD, ΔM) = ({delta_m:.6g}, {delta_d:.6g}): return them in the order (delta_m, delta_d)."
            )
        if math.isclose(delta_m, column_m, rel_tol=rtol) and math.isclose(delta_d, column_d, rel_tol=rtol):
            raise AssertionError(
                f"{what} returned ({delta_m:.6g}, {delta_d:.6g}), expected ({expected_m:.6g}, {expected_d:.6g}); "
                f"yours matches norms over dim=0 (one per input feature). Use one norm and one cosine per output "
                f"feature, i.e. per row of the (out_features, in_features) weight: dim=1."
            )
        W0d, Wd = W0.double(), W.double()
        norm0, norm = torch.linalg.vector_norm(W0d, dim=1), torch.linalg.vector_norm(Wd, dim=1)
        cos = (W0d * Wd).sum(dim=1) / (norm0 * norm)
        m_mistakes = [
            (float(torch.linalg.vector_norm(Wd, dim=0).sub(torch.linalg.vector_norm(W0d, dim=0)).abs().mean()),
             "one norm per input feature (dim=0): use dim=1, one norm per output feature (row)"),
            (float((norm - norm0).mean()), "the mean of the signed differences: take the absolute value of each "
             "row's change before averaging, mean(|‖W_i‖ − ‖W0_i‖|)"),
            (abs(float((norm - norm0).mean())), "the absolute value of the mean difference: take the absolute value "
             "of each row's change first, then average"),
            (float(torch.linalg.vector_norm(Wd - W0d, dim=1).mean()), "the norm of the difference ‖W_i − W0_i‖: ΔM "
             "compares the lengths, | ‖W_i‖ − ‖W0_i‖ |"),
            (abs(float(torch.linalg.vector_norm(Wd) - torch.linalg.vector_norm(W0d))), "the change of the whole "
             "matrix's norm: compare each row's norm, then average over rows"),
        ]  # fmt: skip
        d_mistakes = [
            (float(cos.mean()), "the mean cosine similarity: ΔD is the mean of 1 − cos"),
            (float((1 - torch.nn.functional.cosine_similarity(Wd, W0d, dim=0)).mean()),
             "cosines between columns (dim=0): compare rows, F.cosine_similarity(W, W0, dim=1)"),
            (float((1 - cos).sum()), "the sum over rows: take the mean"),
            (float(torch.arccos(cos.clamp(-1, 1)).mean()), "the angle: ΔD is the mean of 1 − cos, not of arccos"),
        ]  # fmt: skip
        for ok, value, expected, name, mistakes in (
            (ok_m, delta_m, expected_m, "delta_m", m_mistakes),
            (ok_d, delta_d, expected_d, "delta_d", d_mistakes),
        ):
            if ok:
                continue
            for candidate, message in mistakes:
                if math.isclose(value, candidate, rel_tol=rtol, abs_tol=1e-9):
                    raise AssertionError(
                        f"{name} from {what} is {value:.6g}, expected {expected:.6g}: you computed {message}."
                    )
            formula = "mean_i |‖W_i‖ − ‖W0_i‖|" if name == "delta_m" else "mean_i (1 − cos(W_i, W0_i))"
            raise AssertionError(
                f"{name} from {what} is {value:.6g}, expected {expected:.6g} = {formula}, with W_i the i-th row "
                f"(output feature) of W."
            )
    passed(
        "magnitude_direction_change",
        f"{n_checks} checks on shapes {', '.join(str(tuple(s)) for s in shapes)}: per-row ΔM and ΔD, inputs unchanged",
    )
