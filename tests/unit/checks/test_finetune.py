"""Exercise 4's checks: correct answers pass on any shape/seed; every known mistake fails with its own message."""

from __future__ import annotations

import pytest
import torch

from labhelpers.checks.finetune import check_evaluate_accuracy, check_train_one_epoch
from labhelpers.checks.finetune import (
    reference_evaluate_accuracy as _reference_evaluate_accuracy,
)
from labhelpers.checks.finetune import (
    reference_train_one_epoch as _reference_train_one_epoch,
)
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks

# ------------------------------------------------------------------------------------------------
# train_one_epoch


def _train_variant(
    *, train_mode=True, zero_grad=True, step=True, no_grad=False, returns="mean", example_weighted=False
):
    def train_one_epoch(model, loader, optimizer):
        if train_mode:
            model.train()
        losses, sizes = [], []
        for batch in loader:
            if no_grad:
                with torch.no_grad():
                    loss = model(**batch).loss
            else:
                loss = model(**batch).loss
            loss.backward()
            if step:
                optimizer.step()
            if zero_grad:
                optimizer.zero_grad()
            losses.append(loss.item())
            sizes.append(len(batch["labels"]))
        if returns == "last":
            return losses[-1]
        if returns == "sum":
            return sum(losses)
        if returns == "tensor":
            return torch.tensor(losses).mean()
        if returns == "none":
            return None
        if example_weighted:
            return sum(loss * size for loss, size in zip(losses, sizes, strict=True)) / sum(sizes)
        return sum(losses) / len(losses)

    return train_one_epoch


def _zero_grad_first(model, loader, optimizer):
    model.train()
    total, n = 0.0, 0
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        total, n = total + loss.item(), n + 1
    return total / n


@pytest.mark.parametrize(
    "train_one_epoch",
    [_reference_train_one_epoch, _zero_grad_first, _train_variant(example_weighted=True)],
    ids=["reference", "zero-grad-first", "mean-over-examples"],
)
@pytest.mark.parametrize(
    "config",
    [{"seeds": [7], "n_examples": 9, "batch_size": 2}, *notebook_calls("check_train_one_epoch").values()],
    ids=["seed7", *notebook_calls("check_train_one_epoch")],
)
def test_train_check_accepts_correct_loops(train_one_epoch, config, capsys):
    assert check_train_one_epoch(train_one_epoch, **config) is None
    assert "✔ train_one_epoch passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "train_one_epoch, message",
    [
        (
            _train_variant(train_mode=False),
            r"ran the model in evaluation mode, with dropout off: switch it to training mode",
        ),
        (_train_variant(zero_grad=False), r"match an epoch whose gradients were never cleared"),
        (_train_variant(step=False), r"left every parameter unchanged: the backward pass only computes gradients"),
        (_train_variant(no_grad=True), r"gradients switched off"),
        (_train_variant(returns="last"), r"loss of the last batch"),
        (_train_variant(returns="sum"), r"sum of the batch losses"),
        (_train_variant(returns="tensor"), r"returned a tensor where a Python float is expected"),
        (_train_variant(returns="none"), r"returned None: did you forget to return the mean of the batch losses\?"),
    ],
    ids=["no-train-mode", "no-zero-grad", "no-step", "no-grad", "last-loss", "sum-of-losses", "tensor", "no-return"],
)
def test_train_check_names_the_mistake(train_one_epoch, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_train_one_epoch(train_one_epoch)
    assert leaks(str(info.value)) == []


# ------------------------------------------------------------------------------------------------
# evaluate_accuracy


def _evaluate_variant(*, eval_mode=True, no_grad=True, divide_by="examples", returns="float"):
    def evaluate_accuracy(model, loader):
        if eval_mode:
            model.eval()
        correct, total, per_batch = 0, 0, []
        with torch.set_grad_enabled(not no_grad):
            for batch in loader:
                right = (model(**batch).logits.argmax(dim=-1) == batch["labels"]).sum().item()
                correct += right
                total += len(batch["labels"])
                per_batch.append(right / len(batch["labels"]))
        if divide_by == "batches":
            return correct / len(loader)
        if divide_by == "batch-mean":
            return sum(per_batch) / len(per_batch)
        if returns == "percent":
            return 100 * correct / total
        if returns == "tensor":
            return torch.tensor(correct / total)
        return correct / total

    return evaluate_accuracy


def _evaluate_with_dataset_length(model, loader):
    model.eval()
    with torch.inference_mode():
        correct = sum(int((model(**b).logits.argmax(1) == b["labels"]).sum()) for b in loader)
    return correct / len(loader.dataset)


@pytest.mark.parametrize(
    "evaluate_accuracy",
    [_reference_evaluate_accuracy, _evaluate_with_dataset_length],
    ids=["reference", "inference-mode"],
)
@pytest.mark.parametrize(
    "config",
    [{"seeds": [3], "n_examples": 13, "batch_size": 5}, *notebook_calls("check_evaluate_accuracy").values()],
    ids=["seed3", *notebook_calls("check_evaluate_accuracy")],
)
def test_evaluate_check_accepts_correct_answers(evaluate_accuracy, config, capsys):
    assert check_evaluate_accuracy(evaluate_accuracy, **config) is None
    assert "✔ evaluate_accuracy passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "evaluate_accuracy, message",
    [
        (_evaluate_variant(eval_mode=False), r"ran the model in training mode: dropout is then on"),
        (_evaluate_variant(no_grad=False), r"ran the model with gradient tracking on: evaluation needs no gradients"),
        (_evaluate_variant(divide_by="batches"), r"divided by the number of batches"),
        (_evaluate_variant(divide_by="batch-mean"), r"mean of the per-batch accuracies"),
        (_evaluate_variant(returns="percent"), r"percentage"),
        (_evaluate_variant(returns="tensor"), r"returned a tensor where a Python float is expected"),
    ],
    ids=["no-eval-mode", "no-no-grad", "per-batch-count", "mean-of-batch-accuracies", "percent", "tensor"],
)
def test_evaluate_check_names_the_mistake(evaluate_accuracy, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_evaluate_accuracy(evaluate_accuracy)
    assert leaks(str(info.value)) == []
