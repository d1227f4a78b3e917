"""Student-facing checks: each compares a lab exercise with PEFT's DoRA (or autograd) and returns None or raises AssertionError."""

from labhelpers.checks.core import TOLERANCES, assert_close, call_student, expect_tensor, passed
from labhelpers.checks.dora import check_decompose_weight, check_dora_direction_gradient, check_dora_linear
from labhelpers.checks.finetune import (
    check_evaluate_accuracy,
    check_lora_configs,
    check_magnitude_direction_change,
    check_train_one_epoch,
)

__all__ = [
    "TOLERANCES",
    "assert_close",
    "call_student",
    "check_decompose_weight",
    "check_dora_direction_gradient",
    "check_dora_linear",
    "check_evaluate_accuracy",
    "check_lora_configs",
    "check_magnitude_direction_change",
    "check_train_one_epoch",
    "expect_tensor",
    "passed",
]
