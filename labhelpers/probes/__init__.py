"""Probes: run a student's function or class on inputs built from a spec, and record what it did — data only.

Every check of the lab is a probe (here) and a judge (labhelpers.checks). In the notebook both run in the student's
kernel; when grading, the probe runs in a sandbox that sees this package and nothing else of the lab, and its
observations cross to the judge as safetensors and JSON (labhelpers.probes.transport).
"""

from labhelpers.probes import decompose, direction_gradient, dora_linear, finetune, weight_change

PROBES = {
    "check_decompose_weight": (decompose.DecomposeSpec, decompose.probe),
    "check_dora_linear": (dora_linear.DoRALinearSpec, dora_linear.probe),
    "check_dora_direction_gradient": (direction_gradient.DirectionGradientSpec, direction_gradient.probe),
    "check_peft_model": (finetune.PeftModelSpec, finetune.peft_model_probe),
    "check_train_one_epoch": (finetune.TrainEpochSpec, finetune.train_epoch_probe),
    "check_evaluate_accuracy": (finetune.EvaluateSpec, finetune.evaluate_probe),
    "check_magnitude_direction_change": (weight_change.WeightChangeSpec, weight_change.probe),
}
"""{name of the notebook's check function: (its Spec class, its probe)}."""
