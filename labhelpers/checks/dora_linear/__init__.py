"""Exercise 2's judge: DoRALinear against PEFT's DoRA (LoraConfig(use_dora=True)): structure, init, outputs, gradients.

PEFT 0.21 is the oracle: the same base layer, the same lora_A, lora_B and magnitude, the same inputs and dropout
masks, in eval and in train mode. The pieces, each small:

- formula.py: PEFT's forward written out in parts (the oracle maths a known mistake varies);
- mistakes.py: the catalogue of known mistakes, each a change to one part of that formula;
- reference.py: PEFT's own layer run on a case, and autograd's gradients without a detached norm;
- structure.py and outputs.py: the judges, one concern each;
- here: the driver that runs them on every case, and the check the notebook calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labhelpers.checks.core import CheckFailed, run_check, student_error, unchanged
from labhelpers.checks.dora_linear.mistakes import FORWARD_LESSONS
from labhelpers.checks.dora_linear.outputs import judge_initial_output, judge_initial_values, judge_runs
from labhelpers.checks.dora_linear.structure import STRUCTURE_JUDGES
from labhelpers.probes.core import Observation, isolated
from labhelpers.probes.dora_linear import DoRALinearCase, DoRALinearSpec, cases, probe

CASE_JUDGES = (*STRUCTURE_JUDGES, judge_initial_values, judge_initial_output, judge_runs)
"""Every judge of one layer, in order: structure of a fresh layer, its initial state, then passes against PEFT's."""


def judge_base_unchanged(obs: Observation, case: DoRALinearCase) -> None:
    """Check that the pretrained weight, after every pass, is still the one the layer was built with."""
    if not unchanged(obs, f"{case.key}/end/base_weight", case.W0) or (
        f"{case.key}/end/weight" in obs.tensors and not unchanged(obs, f"{case.key}/end/weight", case.W0)
    ):
        raise CheckFailed(
            f"{case.what} changed the pretrained weight in place: W0 must stay as it was, since every forward computes "
            f"V = W0 + s·B·A from it. Compute the adapted weight as a new tensor (no in-place operations on the "
            f"weight, no writes through its .data)."
        )


def judge_case(obs: Observation, case: DoRALinearCase) -> None:
    """Run every judge of one layer; explain a failure the probe could not record by the student's exception."""
    try:
        for judge_one in CASE_JUDGES:
            judge_one(obs, case)
    except CheckFailed as failure:
        if failure.missing:  # the probe stopped there: the exception in student code says why
            student_error(obs, f"{case.key}/error", lessons=FORWARD_LESSONS)
        raise
    student_error(obs, f"{case.key}/error", lessons=FORWARD_LESSONS)
    judge_base_unchanged(obs, case)


def judge(spec: DoRALinearSpec, obs: Observation) -> str:
    """Judge DoRALinear's observations against PEFT's DoRA; return the summary of a pass or raise CheckFailed."""
    n_layers = 0
    with isolated():
        for case in cases(spec):
            judge_case(obs, case)
            n_layers += 1
    shapes = ", ".join(str(tuple(s)) for s in spec.shapes)
    return (
        f"{n_layers} layers on shapes {shapes} (with/without bias, {spec.dtype}, r={spec.r}) match PEFT's DoRA: "
        f"outputs and gradients in eval and train mode, frozen base, zero-init lora_B, {spec.r}*(in+out)+out "
        f"trainable parameters"
    )


def check_dora_linear(DoRALinear: Callable, **settings: Any) -> None:
    """Check DoRALinear against PEFT's DoRA (LoraConfig(use_dora=True)): structure, init, outputs and gradients.

    For each weight shape and seed, and for base layers with and without bias (and once without dropout), wrap a
    fresh nn.Linear with the student's layer and with PEFT, give both the same random lora_A, lora_B and magnitude,
    and compare outputs and gradients in eval mode and in train mode (same dropout masks), on 2-D and 3-D inputs.

    Args:
        DoRALinear: the student's class; DoRALinear(base_layer, r=..., lora_alpha=..., lora_dropout=...).
        settings: the fields of DoRALinearSpec, by keyword; each left out takes the notebook's visible default:
            shapes: base weight shapes (out_features, in_features).
            seeds: random seeds of the base layer, the adapter values and the inputs.
            r, lora_alpha, lora_dropout: the adapter's settings (lora_dropout > 0 for the train-mode checks).
            dtype: dtype of the base layer and inputs (a torch dtype or its name).
            batch_size: rows of the 2-D input; the 3-D input is (2, 3, in_features).
    """
    __tracebackhide__ = True
    spec = DoRALinearSpec.make(**settings)
    run_check(getattr(DoRALinear, "__name__", "DoRALinear"), probe, judge, DoRALinear, spec)
