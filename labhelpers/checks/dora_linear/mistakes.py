"""The catalogue of known mistakes in DoRALinear's forward, each a change to PEFT's formula (formula.DoRAForward).

A mistake names the part of the formula it changes; `recognise` (checks.core) tries each mistake alone, most likely
first, then every two that change different parts together, and the first whose output matches the student's names
the hint. The lessons below do the same for the exceptions a DoRALinear usually raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from labhelpers.checks.core import Mistake
from labhelpers.checks.decompose import AXIS_EXPLANATION
from labhelpers.checks.dora_linear.formula import PEFT_DORA, DoRAInputs
from labhelpers.checks.messages import Lesson

PEFT_FORMULA = "y = base(x) + (m/‖V‖ − 1)·(x_d W0ᵀ) + (m/‖V‖)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x)"
"""PEFT's DoRA forward with dropout, as the messages write it (the notebook's notation)."""
DROPOUT_CONCEPT = (
    "the constructor's lora_dropout is a probability (a float), while the layer's lora_dropout attribute is the module "
    "built from it — dropout with that probability, or a module that passes its input through unchanged when the "
    "probability is 0 — which forward calls once on the adapter's input (PEFT uses one name for both; see Exercise 2's "
    "contract)"
)
"""The concept behind the usual mistakes with lora_dropout."""
V_DEFINITION = (
    "V = W0 + s·B·A, the adapted weight before normalisation (paper Eq. 5, with LoRA's scaling s as in PEFT)"
)
"""What V is, as the messages say it."""


def _scaling_mistakes(r: int, lora_alpha: float) -> list[Mistake]:
    expected_s = f"s = lora_alpha / r = {lora_alpha:g} / {r} = {lora_alpha / r:g}"
    return [
        Mistake(
            f"the LoRA update is not scaled: {V_DEFINITION}, with {expected_s}, the same s in the output and in the "
            f"norm.",
            {"scaling": 1.0},
            name="unscaled",
        ),
        Mistake(
            f"the LoRA update is scaled by lora_alpha alone: {V_DEFINITION}, with {expected_s}.",
            {"scaling": float(lora_alpha)},
            name="scaled_by_alpha",
        ),
        Mistake(
            f"the LoRA update is scaled by r / lora_alpha: {V_DEFINITION}, with {expected_s}.",
            {"scaling": r / lora_alpha},
            name="scaled_by_r_over_alpha",
        ),
    ]


NORM_MISTAKES = (
    Mistake(
        f"the norm uses a different scaling than the output: the norm is of the same {V_DEFINITION}, with the same s.",
        {"norm_scaling": 1.0},
        name="norm_unscaled",
    ),
    Mistake(
        "the norm in forward is taken over dim=0 (one per input feature): " + AXIS_EXPLANATION,
        {"norm_dim": 0},
        name="norm_over_dim0",
    ),
    Mistake(
        "the norm is of the frozen W alone: DoRA divides by the norm of the adapted weight V = W0 + s·B·A, "
        "recomputed in every forward as A and B change (paper Eq. 5).",
        {"norm_of_W": True},
        name="norm_of_W",
    ),
    Mistake(
        "the output ignores magnitude: DoRA's weight is m·V/‖V‖ (paper Eq. 5), so m sets the length of each row.",
        {"magnitude": False},
        name="magnitude_ignored",
    ),
)
"""Mistakes in the weight's norm and the magnitude that multiplies the direction."""

BIAS_MISTAKES = (
    Mistake(
        "the bias of base_layer is missing from the output: the pretrained layer computes x W0ᵀ + b, and DoRA keeps "
        "its bias as it is: y = x W'ᵀ + b.",
        {"bias": "lost"},
        name="bias_lost",
    ),
    Mistake(
        "the bias is multiplied by m/‖V‖: DoRA rescales the rows of the weight, not the bias: y = x W'ᵀ + b.",
        {"bias": "scaled"},
        name="bias_scaled",
    ),
    Mistake(
        "the bias is added twice: y = x W'ᵀ + b has it once (does base(x) already include it?).",
        {"bias": "twice"},
        name="bias_twice",
    ),
)
"""Mistakes in the frozen bias."""

DROPOUT_MISTAKES = (
    Mistake(
        f"dropout is applied to the frozen base path too: the frozen path takes the clean x and only the adapter path "
        f"the dropped-out x_d, as in PEFT: {PEFT_FORMULA}.",
        {"dropout": "everywhere"},
        name="dropout_everywhere",
    ),
    Mistake(
        "in train mode no dropout is applied: the adapter path takes x_d = lora_dropout(x), which is x in eval mode "
        "and x with a random mask in train mode.",
        {"dropout_applied": False},
        name="dropout_forgotten",
    ),
    Mistake(
        f"the (m/‖V‖ − 1)·x W0ᵀ correction uses the clean x: it belongs to the adapter path, so like PEFT it takes the "
        f"dropped-out x_d, as the other adapter term does: {PEFT_FORMULA}.",
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


FORWARD_LESSONS = (
    Lesson(
        r"must match the size of tensor|size of tensor a",
        "A shape clash in forward usually means m/‖V‖ has shape (out_features, 1) — one factor per output feature, "
        "along the first axis — and met the output, shape (..., out_features), whose output features lie along its "
        "last axis. Lay the factor along the last axis before it scales the output (Exercise 2's contract: how "
        "(out, 1) scales (..., out)).",
        where="forward",
    ),
    Lesson(
        r"shapes cannot be multiplied",
        "x is (..., in_features), W0 (out_features, in_features), lora_A (r, in_features) and lora_B (out_features, "
        "r): a linear layer computes x W0ᵀ, so each stored matrix enters a product with the input transposed. Write "
        "the shape of each factor next to the line.",
        where="forward",
    ),
    Lesson(
        r"as child module 'lora_dropout'",
        "nn.Module refuses a float where a module was stored: " + DROPOUT_CONCEPT + ".",
    ),
)
"""What the exceptions a DoRALinear usually raises mean (tried before the lessons every check shares)."""
