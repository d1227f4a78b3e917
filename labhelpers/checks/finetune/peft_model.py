"""Exercise 4's make_peft_model judge: the PEFT model it returns, against the one PEFT builds from the lab's config.

The probe hands make_peft_model a tiny BERT classifier and records what came back: its classes, the model it wraps,
its LoRA config and its structure (adapted modules, DoRA magnitudes, every parameter and whether it trains). The judge
builds the reference the same way (`reference_make_peft_model` on the same tiny classifier) and compares, most
telling difference first. In the grading sandbox PEFT's DoRA layer is not available, so for use_dora=True the probe
records what the answer asked PEFT to build (model and config); the judge then builds that model itself, outside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labhelpers.checks.core import CheckFailed, describe_facts, run_check, student_error
from labhelpers.checks.finetune.reference import EXPECTED_LORA_CONFIG, reference_make_peft_model
from labhelpers.probes.core import Observation
from labhelpers.probes.finetune import PeftModelSpec, model_structure, peft_model_probe, tiny_classifier

PEFT_SETTINGS = (
    "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "layers_to_transform",
    "layers_pattern", "modules_to_save", "bias", "use_dora", "init_lora_weights", "use_rslora",
)  # fmt: skip
"""The fields of a LoraConfig that decide what PEFT builds (the judge rebuilds a config from them)."""
ADAPTER_PARAMETERS = ("lora_A", "lora_B", "lora_magnitude_vector")
"""Parameter names of PEFT's adapters (the rest of a PEFT model is the base model and the head)."""
HEAD = "classifier"
"""The classification head of a BertForSequenceClassification."""


@dataclass(frozen=True)
class Built:
    """A PEFT model as the judge compares it.

    Attributes:
        wraps_given: it wraps the very model make_peft_model was given.
        config: the adapter's LoraConfig fields (JSON data).
        structure: probes.finetune.model_structure of the model.
        rebuilt: True when the judge built it from the recorded config (PEFT's DoRA layer was not available to the
            probe), False when the probe recorded the model make_peft_model returned.
    """

    wraps_given: bool
    config: dict[str, Any]
    structure: dict[str, Any]
    rebuilt: bool = False

    @property
    def trainable(self) -> dict[str, int]:
        return {name: numel for name, numel, trains in self.structure["params"] if trains}

    @property
    def targets(self) -> set[str]:
        return {name.rsplit(".", 1)[-1] for name in self.structure["adapted"]}


def _rebuild(fields: dict[str, Any], seed: int, what: str) -> dict[str, Any]:
    """Build the PEFT model a recorded config describes on the probe's tiny classifier; return its structure."""
    from peft import LoraConfig, get_peft_model

    settings = {name: fields[name] for name in PEFT_SETTINGS if fields.get(name) is not None}
    try:
        return model_structure(get_peft_model(tiny_classifier(seed), LoraConfig(**settings)))
    except (TypeError, ValueError) as error:
        raise CheckFailed(
            f"PEFT cannot build a model from the config of {what}: {type(error).__name__}: {error}"
        ) from None


def _returned(obs: Observation, key: str, what: str, seed: int) -> Built:
    """Return the PEFT model make_peft_model built, or fail saying what came back instead."""
    student_error(obs, f"{key}/error")
    reached = obs.facts.get(f"{key}/reached")
    if reached is not None:
        return Built(reached["wraps_given"], reached["config"], _rebuild(reached["config"], seed, what), rebuilt=True)
    result = obs.facts.get(f"{key}/result")
    if result is None:
        raise CheckFailed(f"{what} was not run (the check stopped before it).", missing=True)
    classes = obs.facts.get(f"{key}/classes") or []
    if result["kind"] == "none":
        raise CheckFailed(
            f"{what} returned None: the function hands back the model PEFT built around the one it was given. "
            f"Expected: a peft.PeftModel; got: None."
        )
    if any(name.endswith(".LoraConfig") for name in classes):
        raise CheckFailed(
            f"{what} returned the LoraConfig itself. A configuration only describes the adapters: PEFT still has "
            f"to build them into the model you were given, and that wrapped model is what the function returns. "
            f"Expected: a peft.PeftModel; got: a LoraConfig."
        )
    if "peft.peft_model.PeftModel" not in classes:
        raise CheckFailed(
            f"{what} returned {describe_facts(result)}, not PEFT's wrapper. Training, print_trainable_parameters() "
            f"and the merged weights of Exercise 5 need the model PEFT builds around yours (a PeftModel). "
            f"Expected: a peft.PeftModel; got: {classes[0].rsplit('.', 1)[-1] if classes else 'nothing'}."
        )
    configs = obs.facts.get(f"{key}/configs") or {}
    config = configs.get("default", next(iter(configs.values()), {}))
    return Built(bool(obs.facts.get(f"{key}/wraps_given")), config, obs.facts[f"{key}/structure"])


def _judge_adapters(built: Built, use_dora: bool, what: str) -> None:
    """Check which modules carry adapters, whether they are DoRA's, and the config's r, lora_alpha and dropout."""
    has_magnitudes = bool(built.structure["magnitudes"])
    if has_magnitudes != use_dora:
        kind = (
            "plain LoRA layers: none of the adapted layers has DoRA's magnitude vector"
            if use_dora
            else ("DoRA layers (each with a magnitude vector) although plain LoRA was asked for")
        )
        raise CheckFailed(
            f"{what} built {kind}. The argument use_dora is the one switch between LoRA and DoRA, and the "
            f"configuration has to carry it. Expected: use_dora={use_dora}; got: use_dora={not use_dora}."
        )
    expected = EXPECTED_LORA_CONFIG["target_modules"]
    if built.targets != expected:
        got = ", ".join(sorted(built.targets)) or "no module at all"
        raise CheckFailed(
            f"{what} put adapters on {got}. The lab adapts the attention's query and value projections of every "
            f"layer and nothing else (PEFT picks the modules whose names end with the targets). Expected: query, "
            f"value; got: {got}."
        )
    meaning = {
        "r": "the rank of the update B·A",
        "lora_alpha": "with r, the scaling lora_alpha / r of the update",
        "lora_dropout": "the dropout probability on the adapter's input",
    }
    for name, about in meaning.items():
        value, wanted = built.config.get(name), EXPECTED_LORA_CONFIG[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isclose(value, wanted):
            raise CheckFailed(
                f"{what} has {name}={value!r}: {about} differs from the comparison's adapters. Expected: "
                f"{name}={wanted}; got: {name}={value!r}."
            )


def _readable(name: str) -> str:
    """Name a parameter briefly: 'bert.encoder.layer.0.attention.self.key.weight' -> 'layer 0 key.weight'."""
    match = re.search(r"layer\.(\d+)\.(?:.*\.)?self\.(.+)$", name)
    return f"layer {match.group(1)} {match.group(2)}" if match else name


def _judge_training(built: Built, reference: Built, what: str) -> None:
    """Check that the head trains, the pretrained weights are frozen, and the count equals PEFT's own."""
    trainable = built.trainable
    if not any(HEAD in name.split(".") for name in trainable):
        raise CheckFailed(
            f"{what} leaves the classification head frozen. The head is new and random, so it has to train with "
            f"the adapters; PEFT trains it (as a trainable copy, modules_to_save) when it knows the task is "
            f"sequence classification. Expected: the classifier's weight and bias trainable; got: frozen."
        )
    extra = [
        _readable(n) for n in trainable if HEAD not in n.split(".") and not any(p in n for p in ADAPTER_PARAMETERS)
    ]
    if extra:
        raise CheckFailed(
            f"{what} also trains {len(extra)} pretrained weight(s), e.g. {extra[0]}. An adapter's point is a frozen "
            f"base model: only the adapters and the new head train. Expected: every other parameter frozen "
            f"(requires_grad=False); got: {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''} trainable."
        )
    count, expected = sum(trainable.values()), sum(reference.trainable.values())
    if count != expected:
        raise CheckFailed(
            f"{what} has {count:,} trainable parameters, but PEFT's own model for the lab's configuration on the "
            f"same classifier has {expected:,}: some adapter or head parameters differ in number or shape. "
            f"Expected: {expected:,}; got: {count:,}."
        )


def judge_peft_model(spec: PeftModelSpec, obs: Observation) -> str:
    """Judge make_peft_model's models against PEFT's own for the lab's configuration."""
    counts = {}
    for seed in spec.seeds:
        for use_dora in (False, True):
            key = f"seed{seed}/use_dora={use_dora}"
            what = f"make_peft_model(model, use_dora={use_dora}) on a tiny BERT classifier (seed {seed})"
            built = _returned(obs, key, what, seed)
            if not built.wraps_given:
                raise CheckFailed(
                    f"{what} returned a PEFT model around another model than the one it was given (a copy, or one "
                    f"loaded anew). The comparison hands each run a fresh copy of the pretrained model with a new "
                    f"head, and that is the model to adapt. Expected: get_base_model() is the model passed in; got: "
                    f"another model."
                )
            reference = Built(True, {}, model_structure(reference_make_peft_model(tiny_classifier(seed), use_dora)))
            _judge_adapters(built, use_dora, what)
            _judge_training(built, reference, what)
            counts[use_dora] = sum(reference.trainable.values())
    return (
        f"a PeftModel around the model given; adapters on query/value with r=8, lora_alpha=16, dropout 0.1, "
        f"use_dora as asked; the head trains, the base is frozen; {counts[False]:,} (LoRA) and {counts[True]:,} "
        f"(DoRA) trainable parameters, as PEFT's own"
    )


def check_peft_model(make_peft_model: Callable, seeds: Sequence[int] = PeftModelSpec.seeds) -> None:
    """Check make_peft_model(base_model, use_dora) on a tiny BERT classifier against PEFT's model for the lab's config.

    Args:
        make_peft_model: the student's function.
        seeds: seeds of the tiny classifiers.
    """
    __tracebackhide__ = True
    spec = PeftModelSpec.make(seeds=seeds)
    run_check("make_peft_model", peft_model_probe, judge_peft_model, make_peft_model, spec)
