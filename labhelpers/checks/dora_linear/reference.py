"""The references of Exercise 2: PEFT's DoRA layer run on a case, and autograd's gradients without a detached norm."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from labhelpers.checks.dora_linear.formula import DoRAForward, DoRAInputs
from labhelpers.probes.core import reseed
from labhelpers.probes.dora_linear import TRAINABLE, DoRALinearCase

ADAPTER = "default"
"""The name PEFT gives the one adapter it injects."""


@dataclass(frozen=True)
class PeftRun:
    """One forward/backward pass of PEFT's DoRA layer, and of the student's, on the same input and dropout mask.

    Attributes:
        key: the key the probe recorded the student's pass under.
        training: train mode (dropout on).
        inputs: the pass's tensors: x (..., in), x_d (the dropout mask applied to x, or None), the case's values.
        grad_output: dL/dy, (..., out_features).
        output: PEFT's y, (..., out_features).
        grads: PEFT's dL/d(lora_A) (r, in), dL/d(lora_B) (out, r), dL/d(magnitude) (out, 1).
    """

    key: str
    training: bool
    inputs: DoRAInputs
    grad_output: torch.Tensor
    output: torch.Tensor
    grads: dict[str, torch.Tensor]


def peft_dora_layer(case: DoRALinearCase) -> nn.Module:
    """Wrap a fresh copy of the case's base layer in PEFT's DoRA layer, LoraConfig(use_dora=True), with PEFT's init.

    Returns:
        PEFT's `lora.Linear`: forward (..., in_features) -> (..., out_features); its adapter is named "default".
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=case.r, lora_alpha=case.lora_alpha, lora_dropout=case.p, target_modules=["layer"], use_dora=True
    )
    holder = nn.Module()  # PEFT finds the layer to adapt by its name in a model
    holder.layer = case.base_layer()
    return inject_adapter_in_model(config, holder).layer


def case_inputs(case: DoRALinearCase, x: torch.Tensor, x_d: torch.Tensor | None, params: dict) -> DoRAInputs:
    """Return the inputs of DoRA's formula for x, with the layer's lora_A, lora_B and magnitude taken from params."""
    return DoRAInputs(
        x, x_d, case.W0, case.b0, params["lora_A"], params["lora_B"], params["magnitude"], case.lora_alpha / case.r
    )


def peft_runs(case: DoRALinearCase) -> list[PeftRun]:
    """Run PEFT's DoRA on every pass of the case, with the case's values and the same dropout masks as the probe."""
    layer = peft_dora_layer(case).to(case.W0.dtype)
    with torch.no_grad():
        layer.lora_A[ADAPTER].weight.copy_(case.params["lora_A"])
        layer.lora_B[ADAPTER].weight.copy_(case.params["lora_B"])
        # PEFT stores the magnitude 1-D, (out_features,); the lab keeps (out_features, 1).
        layer.lora_magnitude_vector[ADAPTER].weight.copy_(case.params["magnitude"].view(-1))
    runs = []
    for (index, training, key), g in zip(case.runs(), case.grad_outputs, strict=True):
        x = case.inputs[index]
        layer.train(training)
        layer.zero_grad(set_to_none=True)
        reseed(case.seed)  # PEFT calls dropout(x) once, after the base layer: the student's layer draws the same mask
        y = layer(x)
        (y * g).sum().backward()
        grads = {
            "lora_A": layer.lora_A[ADAPTER].weight.grad.detach().clone(),
            "lora_B": layer.lora_B[ADAPTER].weight.grad.detach().clone(),
            "magnitude": layer.lora_magnitude_vector[ADAPTER].weight.grad.detach().view(-1, 1).clone(),
        }
        reseed(case.seed)
        x_d = torch.nn.functional.dropout(x, case.p) if training and case.p > 0 else None
        runs.append(PeftRun(key, training, case_inputs(case, x, x_d, case.params), g, y.detach(), grads))
    return runs


def not_detached_grads(run: PeftRun) -> dict[str, torch.Tensor]:
    """Return autograd's gradients of DoRA WITHOUT the detached norm (paper §4.2, Eq. 6): a missing .detach()'s."""
    values = {"lora_A": run.inputs.A, "lora_B": run.inputs.B, "magnitude": run.inputs.m}
    leaves = {name: values[name].detach().clone().requires_grad_(True) for name in TRAINABLE}
    inputs = replace(run.inputs, A=leaves["lora_A"], B=leaves["lora_B"], m=leaves["magnitude"])
    y = DoRAForward(detach=False)(inputs)
    return dict(zip(leaves, torch.autograd.grad((y * run.grad_output).sum(), list(leaves.values())), strict=True))
