"""Exercise 4's evaluate_accuracy judge: eval mode, no gradients, and the accuracy known by construction."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from labhelpers.checks.core import (
    CheckFailed,
    Mistake,
    explain,
    number_tolerance_text,
    recognise,
    run_check,
    student_error,
)
from labhelpers.checks.finetune.reference import SeedCase, numbers_agree, reference_evaluate_accuracy, returned_number
from labhelpers.checks.messages import verdict
from labhelpers.probes.core import Observation, isolated
from labhelpers.probes.finetune import EvaluateSpec, evaluate_case, evaluate_probe, parameters

ACCURACY_RTOL = 1e-9
"""Relative tolerance of a returned accuracy (a ratio of counts)."""


def _judge_evaluation_calls(obs: Observation, case: SeedCase) -> None:
    """Check that evaluate_accuracy ran the model in eval mode, without gradients, and changed nothing."""
    key, what = case.key, case.what
    training = obs.facts.get(f"{key}/training") or []
    grad_enabled = obs.facts.get(f"{key}/grad_enabled") or []
    student_error(obs, f"{key}/error")
    if f"{key}/result" not in obs.facts:
        raise CheckFailed(f"{what} was not run (the check stopped before it).")
    if not training:
        raise CheckFailed(
            f"{what} never called the model: each batch's predictions come from the model's logits on that batch (the "
            f"class with the largest logit)."
        )
    if any(training):
        raise CheckFailed(
            f"{what} ran the model in training mode: dropout is then on and the predictions are random, so an "
            f"evaluation first switches the model to evaluation mode (nn.Module has a method for each mode).",
            mistakes=("training_mode",),
        )
    if any(grad_enabled):
        raise CheckFailed(
            f"{what} ran the model with gradient tracking on: evaluation needs no gradients, and tracking them costs "
            f"memory and time; switch it off around the loop (PyTorch has a context manager for this).",
            mistakes=("gradients_tracked",),
        )
    start = parameters(evaluate_case(case.spec, case.seed).model)
    if obs.facts.get(f"{key}/has_grad") or not all(
        f"{key}/param/{name}" in obs.tensors and torch.equal(obs.tensors[f"{key}/param/{name}"], value)
        for name, value in start.items()
    ):
        raise CheckFailed(
            f"{what} changed the model or its gradients: evaluation measures the model as it is, so no backward pass "
            f"and no optimiser step."
        )


def _judge_accuracy(obs: Observation, case: SeedCase) -> None:
    """Check that the returned accuracy is the fraction of examples right over all batches; name a known wrong one."""
    spec, what = case.spec, case.what
    accuracy = returned_number(obs, case.key, what, "the fraction of examples predicted correctly")
    built = evaluate_case(spec, case.seed)
    expected = reference_evaluate_accuracy(copy.deepcopy(built.model), built.loader)
    if numbers_agree(accuracy, expected, ACCURACY_RTOL):
        return
    correct = built.correct
    sizes = [len(batch["labels"]) for batch in built.loader]
    bounds = [sum(sizes[:b]) for b in range(len(sizes) + 1)]
    per_batch = [float(correct[bounds[b] : bounds[b + 1]].float().mean()) for b in range(len(sizes))]
    n_correct = int(correct.sum())
    mistakes = [
        Mistake("a percentage: return the fraction (between 0 and 1), without multiplying by 100",
                value=lambda: 100 * expected, name="percentage"),
        Mistake("the number of correct predictions divided by the number of batches: the accuracy divides by the "
                "number of examples, counted over every batch (the last one is smaller)",
                value=lambda: n_correct / len(sizes), name="divided_by_batches"),
        Mistake("the mean of the per-batch accuracies, which counts the smaller last batch as much as a full one: "
                "count correct predictions and examples over all batches, then divide",
                value=lambda: sum(per_batch) / len(per_batch), name="mean_of_batch_accuracies"),
        Mistake("the number of correct predictions: divide by the number of examples", value=lambda: float(n_correct),
                name="count_of_correct"),
        Mistake("the fraction of wrong predictions: count the predictions that equal the label",
                value=lambda: 1 - expected, name="error_rate"),
        Mistake("the accuracy of the last batch only: accumulate over every batch", value=lambda: per_batch[-1],
                name="last_batch_only"),
    ]  # fmt: skip
    found = recognise(accuracy, mistakes, matches=lambda a, value: numbers_agree(a, value, ACCURACY_RTOL), pairs=False)
    evidence = f"Expected {expected:.6g} ({n_correct} of {spec.n_examples} examples right), got {accuracy:.6g}"
    if found:
        raise CheckFailed(verdict(f"{what} returned {explain(found)}", evidence, number_tolerance_text(ACCURACY_RTOL)))
    raise CheckFailed(
        verdict(
            f"{what} returned a number no known mistake explains. The accuracy is the number of examples whose "
            f"predicted class (the largest logit) equals the label, divided by the number of examples",
            evidence,
            number_tolerance_text(ACCURACY_RTOL),
        )
    )


def judge_evaluate_accuracy(spec: EvaluateSpec, obs: Observation) -> str:
    """Judge evaluate_accuracy's observations against the accuracy known by construction."""
    with isolated():
        for seed in spec.seeds:
            case = SeedCase(spec, seed, "evaluate_accuracy")
            _judge_evaluation_calls(obs, case)
            _judge_accuracy(obs, case)
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
