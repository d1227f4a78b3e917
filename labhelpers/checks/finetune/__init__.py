"""Exercise 4's judges: make_peft_model against PEFT, train_one_epoch and evaluate_accuracy against reference loops.

One module per function the student writes (peft_model, train_epoch, evaluate), each with its judge and the check
the notebook calls; reference.py holds the configuration, model and loops they compare with.
"""

from labhelpers.checks.finetune.evaluate import check_evaluate_accuracy, judge_evaluate_accuracy
from labhelpers.checks.finetune.peft_model import check_peft_model, judge_peft_model
from labhelpers.checks.finetune.reference import (
    EXPECTED_LORA_CONFIG,
    reference_evaluate_accuracy,
    reference_lora_config,
    reference_make_peft_model,
    reference_train_one_epoch,
)
from labhelpers.checks.finetune.train_epoch import check_train_one_epoch, judge_train_one_epoch

__all__ = [
    "EXPECTED_LORA_CONFIG",
    "check_evaluate_accuracy",
    "check_peft_model",
    "check_train_one_epoch",
    "judge_evaluate_accuracy",
    "judge_peft_model",
    "judge_train_one_epoch",
    "reference_evaluate_accuracy",
    "reference_lora_config",
    "reference_make_peft_model",
    "reference_train_one_epoch",
]
