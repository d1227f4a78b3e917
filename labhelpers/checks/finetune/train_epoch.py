"""Exercise 4's train_one_epoch judge: the parameters and mean loss after one epoch, against the reference epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from labhelpers.checks.core import (
    CheckFailed,
    Mistake,
    assert_close,
    explain,
    number_tolerance_text,
    recognise,
    run_check,
    student_error,
)
from labhelpers.checks.finetune.reference import (
    SeedCase,
    numbers_agree,
    reference_epoch,
    reference_train_one_epoch,
    returned_number,
    train_variant,
)
from labhelpers.checks.messages import verdict
from labhelpers.probes.core import Observation, isolated
from labhelpers.probes.finetune import TrainEpochSpec, parameters, train_epoch_probe, train_epoch_start

PARAMETER_RTOL = 1e-4
"""Relative tolerance of a parameter after one epoch against the reference epoch's (AdamW, float32)."""
PARAMETER_ATOL = 1e-6
LOSS_RTOL = 1e-5
"""Relative tolerance of a returned mean loss (the mean of float32 batch losses)."""


def same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Tell whether two {name: parameter} agree within the tolerance of one AdamW epoch in float32."""
    return all(torch.allclose(a[name], b[name], rtol=PARAMETER_RTOL, atol=PARAMETER_ATOL) for name in a)


def _judge_training_calls(obs: Observation, case: SeedCase) -> None:
    """Check that train_one_epoch called the model once per batch, in train mode, with gradients on."""
    key, what = case.key, case.what
    training = obs.facts.get(f"{key}/training") or []
    grad_enabled = obs.facts.get(f"{key}/grad_enabled") or []
    if f"{key}/error" in obs.facts:
        if grad_enabled and not all(grad_enabled):
            raise CheckFailed(
                f"{what} ran the model with gradients switched off, so the backward pass failed: training needs "
                f"gradient tracking on during the forward pass (no no-grad or inference-mode block around it).",
                cause=f"{key}/error",
            )
        student_error(obs, f"{key}/error")
    if f"{key}/result" not in obs.facts:
        raise CheckFailed(f"{what} was not run (the check stopped before it).")
    batches = obs.facts[f"{key}/batches"]
    if not training:
        raise CheckFailed(
            f"{what} never called the model: each batch's loss comes from the model itself (a Hugging Face classifier "
            f"given the labels in its batch returns the loss)."
        )
    if len(training) != batches:
        raise CheckFailed(
            verdict(f"{what} did not run one forward pass per batch", f"Expected {batches} calls, got {len(training)}")
        )
    if not all(training):
        raise CheckFailed(
            f"{what} ran the model in evaluation mode, with dropout off: switch it to training mode at the start of the "
            f"epoch, since it may arrive in evaluation mode (e.g. after evaluate_accuracy).",
            mistakes=("evaluation_mode",),
        )
    if not all(grad_enabled):
        raise CheckFailed(
            f"{what} ran the model with gradients switched off: training needs gradient tracking on during the "
            f"forward pass."
        )


def _trained_parameters(obs: Observation, case: SeedCase) -> dict[str, torch.Tensor]:
    """Return the parameters after the student's epoch, once all are there, none reshaped and some changed."""
    start, _ = train_epoch_start(case.spec, case.seed)
    initial = parameters(start)
    params = {}
    for name in initial:
        value = obs.tensors.get(f"{case.key}/param/{name}")
        if value is None or value.shape != initial[name].shape:
            raise CheckFailed(f"{case.what} changed the model's structure: parameter {name} is missing or reshaped.")
        params[name] = value
    if all(torch.equal(params[name], p) for name, p in initial.items()):
        raise CheckFailed(
            f"{case.what} left every parameter unchanged: the backward pass only computes gradients; the optimiser's "
            f"step applies them, once per batch."
        )
    return params


def _judge_parameters(case: SeedCase, params: dict[str, torch.Tensor]) -> float:
    """Check the parameters against the reference epoch's (naming a missing zero_grad); return its mean loss."""
    ref_loss, ref_params = reference_epoch(case.spec, case.seed, reference_train_one_epoch)
    if same_parameters(params, ref_params):
        return ref_loss
    _, accumulated = reference_epoch(case.spec, case.seed, train_variant, zero_grad=False)
    if same_parameters(params, accumulated):
        raise CheckFailed(
            f"the parameters after {case.what} match an epoch whose gradients were never cleared: the backward pass "
            f"adds to the gradients already stored, so without clearing them (the optimiser's zero_grad) every step "
            f"also applies the gradients of all earlier batches.",
            mistakes=("gradients_never_cleared",),
        )
    name = max(params, key=lambda n: float((params[n] - ref_params[n]).abs().max()))
    assert_close(
        params[name], ref_params[name], f"parameter {name} after {case.what}",
        hint="the parameters after one epoch differ from the reference epoch's in a way no known mistake explains: "
        "each batch is one forward pass, one backward pass, one optimiser step and clearing the gradients, nothing "
        "more.",
    )  # fmt: skip
    return ref_loss


def _judge_mean_loss(obs: Observation, case: SeedCase, ref_loss: float) -> None:
    """Check that the returned loss is the mean batch loss (or the mean over examples); name a known wrong one."""
    spec, what = case.spec, case.what
    loss = returned_number(obs, case.key, what, "the mean of the batch losses")
    losses, _ = reference_epoch(spec, case.seed, train_variant)
    sizes = [min(spec.batch_size, spec.n_examples - i) for i in range(0, spec.n_examples, spec.batch_size)]
    by_example = sum(x * n for x, n in zip(losses, sizes, strict=True)) / sum(sizes)
    if numbers_agree(loss, ref_loss, LOSS_RTOL) or numbers_agree(loss, by_example, LOSS_RTOL):
        return
    mistakes = [
        Mistake("the loss of the last batch: the epoch's loss is the mean over every batch",
                value=lambda: losses[-1], name="last_batch_loss"),
        Mistake("the sum of the batch losses: divide by the number of batches to get the mean",
                value=lambda: sum(losses), name="sum_of_losses"),
        Mistake("the loss of the first batch: did you `return` inside the loop?", value=lambda: losses[0],
                name="first_batch_loss"),
        Mistake("the sum of batch losses divided by the number of examples: each batch loss is already a mean over "
                "its examples, so divide by the number of batches", value=lambda: sum(losses) / spec.n_examples,
                name="divided_by_examples"),
    ]  # fmt: skip
    found = recognise(loss, mistakes, matches=lambda a, value: numbers_agree(a, value, LOSS_RTOL), pairs=False)
    evidence = (
        f"Expected the mean batch loss {ref_loss:.6g} (batch losses {', '.join(f'{x:.4g}' for x in losses)}), got "
        f"{loss:.6g}"
    )
    if found:
        raise CheckFailed(verdict(f"{what} returned {explain(found)}", evidence, number_tolerance_text(LOSS_RTOL)))
    raise CheckFailed(
        verdict(
            f"{what} returned a number no known mistake explains: the epoch's loss is the mean of the batch losses, "
            f"each taken as a Python float",
            evidence,
            number_tolerance_text(LOSS_RTOL),
        )
    )


def judge_train_one_epoch(spec: TrainEpochSpec, obs: Observation) -> str:
    """Judge train_one_epoch's observations against the reference epoch; return a pass summary or raise CheckFailed."""
    with isolated():
        for seed in spec.seeds:
            case = SeedCase(spec, seed, "train_one_epoch")
            _judge_training_calls(obs, case)
            params = _trained_parameters(obs, case)
            ref_loss = _judge_parameters(case, params)
            _judge_mean_loss(obs, case, ref_loss)
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
