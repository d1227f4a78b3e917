"""Exercise 4's make_lora_config judge: the configuration's settings, and that PEFT builds a model from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from labhelpers.checks.core import CheckFailed, describe_facts, run_check, student_error
from labhelpers.checks.finetune.reference import EXPECTED_LORA_CONFIG
from labhelpers.probes.core import Observation
from labhelpers.probes.finetune import LoraConfigSpec, lora_config_probe, tiny_classifier

PEFT_SETTINGS = (
    "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "layers_to_transform",
    "layers_pattern", "modules_to_save", "bias", "use_dora",
)  # fmt: skip
"""The fields of a student's LoraConfig that decide which modules PEFT adapts (the judge rebuilds it from them)."""


def judge_lora_configs(spec: LoraConfigSpec, obs: Observation) -> str:
    """Judge make_lora_config's configs against the lab's settings, and that PEFT builds a model from each."""
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.lora import LoraLayer

    for use_dora in (False, True):
        key, what = f"use_dora={use_dora}", f"make_lora_config({use_dora})"
        student_error(obs, f"{key}/error")
        result = obs.facts.get(f"{key}/result")
        if result is None:
            raise CheckFailed(f"{what} was not run (the check stopped before it).")
        if result["kind"] == "none":
            raise CheckFailed(f"{what} returned None: did you forget `return LoraConfig(...)`?")
        if obs.facts.get(f"{key}/type") != "peft.tuners.lora.config.LoraConfig":
            raise CheckFailed(
                f"{what} returned {describe_facts(result)}, expected a peft.LoraConfig: `return LoraConfig(...)`."
            )
        fields: dict[str, Any] = obs.facts.get(f"{key}/fields") or {}
        task_type = fields.get("task_type")
        if task_type != TaskType.SEQ_CLS.value:
            raise CheckFailed(
                f"{what} has task_type={task_type!r}, expected TaskType.SEQ_CLS: sequence classification also makes "
                f"PEFT train the new classification head (modules_to_save)."
            )
        for name in ("r", "lora_alpha", "lora_dropout"):
            value, expected = fields.get(name), EXPECTED_LORA_CONFIG[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isclose(value, expected):
                raise CheckFailed(f"{what} has {name}={value!r}, expected {name}={expected}.")
        targets = fields.get("target_modules")
        targets = {targets} if isinstance(targets, str) else set(targets or ())
        if targets != EXPECTED_LORA_CONFIG["target_modules"]:
            raise CheckFailed(
                f"{what} has target_modules={fields.get('target_modules')!r}, expected ['query', 'value']: the attention "
                f"projections named query and value in every BERT layer."
            )
        if fields.get("use_dora") is not use_dora:
            raise CheckFailed(
                f"{what} has use_dora={fields.get('use_dora')!r}, expected {use_dora}: pass the argument on, "
                f"LoraConfig(..., use_dora=use_dora)."
            )
        # PEFT builds the model from the same settings here, outside the student's process.
        settings = {name: fields[name] for name in PEFT_SETTINGS if fields.get(name) is not None}
        try:
            model = get_peft_model(tiny_classifier(seed=0), LoraConfig(**settings))
        except (TypeError, ValueError) as error:
            raise CheckFailed(f"PEFT cannot build a model from {what}: {type(error).__name__}: {error}") from None
        adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)}
        if adapted != EXPECTED_LORA_CONFIG["target_modules"]:
            raise CheckFailed(
                f"get_peft_model with {what} adapted {sorted(adapted)}, expected query and value: check target_modules."
            )
    return "SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, query/value, use_dora as asked; PEFT builds both"


def check_lora_configs(make_lora_config: Callable) -> None:
    """Check make_lora_config(use_dora) -> LoraConfig for LoRA and DoRA, and that PEFT builds a model from it.

    Args:
        make_lora_config: the student's function.
    """
    __tracebackhide__ = True
    run_check("make_lora_config", lora_config_probe, judge_lora_configs, make_lora_config, LoraConfigSpec.make())
