"""The notebook's checks: each runs the exercise's probe on the student's code and its judge on what the probe saw.

One module per exercise (decompose, direction_gradient, weight_change; dora_linear and finetune are packages of small
modules) holds the judge — the references (PEFT, autograd, the definitions) and the catalogue of known mistakes — and
the `check_*` function the notebook calls; the probes that run student code live apart in labhelpers.probes, which
is all a graded submission's sandbox can see. A check prints one ✔ line or raises AssertionError saying what was
expected, what was got and how to fix it.
"""

from labhelpers.checks import decompose, direction_gradient, dora_linear, finetune, weight_change
from labhelpers.checks.decompose import check_decompose_weight
from labhelpers.checks.direction_gradient import check_dora_direction_gradient
from labhelpers.checks.dora_linear import check_dora_linear
from labhelpers.checks.finetune import check_evaluate_accuracy, check_peft_model, check_train_one_epoch
from labhelpers.checks.weight_change import check_magnitude_direction_change

JUDGES = {
    "check_decompose_weight": decompose.judge,
    "check_dora_linear": dora_linear.judge,
    "check_dora_direction_gradient": direction_gradient.judge,
    "check_peft_model": finetune.judge_peft_model,
    "check_train_one_epoch": finetune.judge_train_one_epoch,
    "check_evaluate_accuracy": finetune.judge_evaluate_accuracy,
    "check_magnitude_direction_change": weight_change.judge,
}
"""{name of the notebook's check function: its judge}; labhelpers.probes.PROBES holds the matching probes."""

__all__ = [
    "JUDGES",
    "check_decompose_weight",
    "check_dora_direction_gradient",
    "check_dora_linear",
    "check_evaluate_accuracy",
    "check_magnitude_direction_change",
    "check_peft_model",
    "check_train_one_epoch",
]
