"""Exercise 4's judges: make_lora_config against PEFT, train_one_epoch and evaluate_accuracy against reference loops.

One module per function the student writes (lora_config, train_epoch, evaluate), each with its judge and the check
the notebook calls; reference.py holds the configuration and loops they compare with.
"""

from labhelpers.checks.finetune.evaluate import check_evaluate_accuracy, judge_evaluate_accuracy
from labhelpers.checks.finetune.lora_config import check_lora_configs, judge_lora_configs
from labhelpers.checks.finetune.reference import (
    EXPECTED_LORA_CONFIG,
    reference_evaluate_accuracy,
    reference_lora_config,
    reference_train_one_epoch,
)
from labhelpers.checks.finetune.train_epoch import check_train_one_epoch, judge_train_one_epoch

__all__ = [
    "EXPECTED_LORA_CONFIG",
    "check_evaluate_accuracy",
    "check_lora_configs",
    "check_train_one_epoch",
    "judge_evaluate_accuracy",
    "judge_lora_configs",
    "judge_train_one_epoch",
    "reference_evaluate_accuracy",
    "reference_lora_config",
    "reference_train_one_epoch",
]
