"""The catalogue of known mistakes in DoRALinear's forward, each a change to PEFT's formula (formula.DoRAForward).

A mistake names the part of the formula it changes; `recognise` (checks.core) tries each mistake alone, most likely
first, then every two that change different parts together, and the first whose output matches the student's names
the hint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from labhelpers.checks.core import Mistake
from labhelpers.checks.decompose import AXIS_EXPLANATION
from labhelpers.checks.dora_linear.formula import PEFT_DORA, DoRAInputs

PEFT_FORMULA = "y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x)"
"""PEFT's DoRA forward with dropout, as the messages write it."""


def _scaling_mistakes(r: int, lora_alpha: float) -> list[Mistake]:
    expected_s = f"scaling = lora_alpha / r = {lora_alpha:g} / {r} = {lora_alpha / r:g}"
    return [
        Mistake(
            f"the LoRA update is not scaled: multiply B @ A by {expected_s} (in the output and in the norm).",
            {"scaling": 1.0},
            name="unscaled",
        ),
        Mistake(
            f"the LoRA update is scaled by lora_alpha alone: use {expected_s}.",
            {"scaling": float(lora_alpha)},
            name="scaled_by_alpha",
        ),
        Mistake(
            f"the LoRA update is scaled by r / lora_alpha: use {expected_s}.",
            {"scaling": r / lora_alpha},
            name="scaled_by_r_over_alpha",
        ),
    ]


NORM_MISTAKES = (
    Mistake(
        "the norm uses a different scaling than the output: the norm is of V = W + scaling·B·A with the same scaling.",
        {"norm_scaling": 1.0},
        name="norm_unscaled",
    ),
    Mistake(
        "the norm in forward is taken over dim=0 (one per input feature): "
        + AXIS_EXPLANATION
        + " Use ||V|| over dim=1.",
        {"norm_dim": 0},
        name="norm_over_dim0",
    ),
    Mistake(
        "the norm is of the frozen W alone: DoRA divides by the norm of the adapted weight V = W + scaling·B·A, "
        "recomputed in every forward.",
        {"norm_of_W": True},
        name="norm_of_W",
    ),
    Mistake(
        "the output ignores magnitude: DoRA's weight is magnitude * V / ||V||.",
        {"magnitude": False},
        name="magnitude_ignored",
    ),
)
"""Mistakes in the weight's norm and the magnitude that multiplies the direction."""

BIAS_MISTAKES = (
    Mistake(
        "the bias of base_layer is missing from the output: add self.bias (frozen) to the result.",
        {"bias": "lost"},
        name="bias_lost",
    ),
    Mistake(
        "the bias is multiplied by magnitude / ||V||: add it unscaled, y = x W'ᵀ + b.",
        {"bias": "scaled"},
        name="bias_scaled",
    ),
    Mistake("the bias is added twice: add self.bias once.", {"bias": "twice"}, name="bias_twice"),
)
"""Mistakes in the frozen bias."""

DROPOUT_MISTAKES = (
    Mistake(
        f"dropout is applied to the frozen base path too: apply lora_dropout on the adapter path only, as PEFT: "
        f"{PEFT_FORMULA}.",
        {"dropout": "everywhere"},
        name="dropout_everywhere",
    ),
    Mistake(
        "in train mode no dropout is applied: compute x_d = self.lora_dropout(x) and use it on the adapter path.",
        {"dropout_applied": False},
        name="dropout_forgotten",
    ),
    Mistake(
        f"the (m/||V|| - 1)·x Wᵀ correction uses the clean x: like PEFT, use the dropped-out x_d in both adapter "
        f"terms, {PEFT_FORMULA}.",
        {"dropout": "lora_only"},
        name="dropout_lora_only",
    ),
)
"""Mistakes in where the dropped-out input goes (train mode with lora_dropout > 0 only)."""


def output_mistakes(r: int, lora_alpha: float, dropout: bool) -> list[Mistake]:
    """Return the known mistakes of DoRALinear's forward, most likely first.

    Args:
        r, lora_alpha: the layer's settings (the scaling mistakes name the expected value).
        dropout: whether the pass drew a dropout mask (train mode, lora_dropout > 0): adds the dropout mistakes.

    Returns:
        Mistakes whose changes are fields of formula.DoRAForward.
    """
    mistakes = [*_scaling_mistakes(r, lora_alpha), *NORM_MISTAKES, *BIAS_MISTAKES]
    return mistakes + list(DROPOUT_MISTAKES) if dropout else mistakes


def output_builder(inputs: DoRAInputs) -> Callable[..., torch.Tensor]:
    """Return build(**changes): PEFT's formula with those changes, on these inputs (the builder `recognise` calls)."""

    def build(**changes: Any) -> torch.Tensor:
        return replace(PEFT_DORA, **changes)(inputs)

    return build
