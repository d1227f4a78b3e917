"""The judges of a freshly built DoRALinear's structure, each one concern, run in the order of STRUCTURE_JUDGES.

They read what the probe recorded of the layer before any forward pass: PEFT's attribute names, shapes, dtypes and
devices, requires_grad flags, the scaling and dropout settings and the trainable-parameter count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from labhelpers.checks.core import SETTING_RTOL, CheckFailed, describe_facts, expect_tensor, unchanged
from labhelpers.checks.decompose import judge_magnitude_shape
from labhelpers.checks.dora_linear.mistakes import DROPOUT_CONCEPT
from labhelpers.checks.messages import sentence, verdict
from labhelpers.probes.core import Observation
from labhelpers.probes.dora_linear import DoRALinearCase

ROLES = {
    "weight": "the pretrained weight W0, (out_features, in_features), kept frozen: V = W0 + s·B·A starts from it in "
    "every forward, and it never trains",
    "bias": "the pretrained bias, (out_features,), frozen, or None when base_layer has none",
    "magnitude": "m, one trainable magnitude per output feature, (out_features, 1), starting at the length of each row "
    "of W0 (Exercise 1's magnitude), so that the layer starts equal to base_layer",
    "lora_A": "the trainable (r, in_features) factor of the low-rank update B·A, random at the start",
    "lora_B": "the trainable (out_features, r) factor of B·A, zero at the start, so that B·A = 0 at first",
    "scaling": "s = lora_alpha / r, the number B·A is multiplied by",
    "r": "the rank of B·A",
    "in_features": "the size of the input's last axis",
    "out_features": "the size of the output's last axis",
    "lora_dropout": "the dropout module forward applies to the adapter's input (the constructor's lora_dropout is its "
    "probability, a float)",
}
"""What each attribute of a DoRA layer is for, in PEFT's names: what a message says of an attribute that is missing."""


def recorded_attribute(obs: Observation, case: DoRALinearCase, name: str) -> dict[str, Any]:
    """Return the facts the probe recorded of DoRALinear.<name>, or fail saying what the attribute is for."""
    facts = obs.facts.get(f"{case.key}/attr/{name}")
    if facts is None:
        raise CheckFailed(f"DoRALinear.{name} was not recorded: the check stopped before it.", missing=True)
    if facts.get("kind") == "missing":
        raise CheckFailed(f"DoRALinear has no attribute `{name}`: it is {ROLES[name]}.")
    return facts


def judge_attributes(obs: Observation, case: DoRALinearCase) -> None:
    """Check that __init__ created every attribute a DoRA layer has; name each missing one with what it is for."""
    if f"{case.key}/attr/weight" not in obs.facts:
        return  # nothing was recorded of the attributes: the judges that follow say why
    missing = [name for name in ROLES if (obs.facts.get(f"{case.key}/attr/{name}") or {}).get("kind") == "missing"]
    if not missing:
        return
    names = ", ".join(f"`{name}`" for name in missing)
    listing = "; ".join(f"`{name}`, {ROLES[name]}" for name in missing)
    raise CheckFailed(
        f"__init__ did not create {names}: DoRALinear has "
        + (f"no attribute {names}" if len(missing) == 1 else "none of these attributes")
        + f". A DoRA layer holds the frozen pretrained layer and the adapter that trains, under PEFT's names, which "
        f"the check and Exercise 2's contract use: {listing}."
    )


def judge_module(obs: Observation, case: DoRALinearCase) -> None:
    """Check that the constructor gave an nn.Module and left base_layer's weight and bias as they were."""
    key, what = case.key, case.what
    layer = obs.facts.get(f"{key}/layer")
    if layer is None:
        raise CheckFailed(f"{what} was not built: the check stopped before it.", missing=True)
    if layer.get("kind") != "module":
        raise CheckFailed(
            verdict(
                f"{what} gave something that is not an nn.Module: a layer is a subclass of nn.Module whose "
                f"constructor first initialises nn.Module itself, as Exercise 2's stub does",
                f"Got {describe_facts(layer)}",
            )
        )
    if not unchanged(obs, f"{key}/base_after/weight", case.W0) or (
        case.b0 is not None and not unchanged(obs, f"{key}/base_after/bias", case.b0)
    ):
        raise CheckFailed(
            f"{what} changed base_layer's weight or bias in place: the pretrained layer must stay as it was (DoRA "
            f"computes a new weight from it in every forward), so no in-place operations on it and no writes through "
            f"its .data."
        )


def judge_frozen_weight(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.weight holds base_layer.weight unchanged, frozen."""
    recorded_attribute(obs, case, "weight")
    weight = expect_tensor(obs, f"{case.key}/attr/weight", "DoRALinear.weight", shape=tuple(case.W0.shape))
    if not torch.equal(weight, case.W0):
        raise CheckFailed(
            f"DoRALinear.weight should hold base_layer.weight unchanged: it is W0, the starting point of V = W0 + "
            f"s·B·A. {case.what} stores different values."
        )
    if obs.facts[f"{case.key}/attr/weight"]["requires_grad"]:
        raise CheckFailed(
            "the base weight is trainable (DoRALinear.weight.requires_grad is True): DoRA freezes W0 and trains only "
            "magnitude, lora_A and lora_B, so the pretrained weight must be a parameter that does not require a "
            "gradient."
        )


def judge_frozen_bias(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.bias holds base_layer.bias unchanged and frozen, or None when the base has none."""
    key, b0 = case.key, case.b0
    facts = recorded_attribute(obs, case, "bias")
    if b0 is None:
        if facts["kind"] != "none":
            stored = obs.tensors.get(f"{key}/attr/bias")
            if stored is None or bool(stored.any()) or facts.get("requires_grad"):
                raise CheckFailed("base_layer has no bias (bias=False), so DoRALinear.bias should be None.")
        return
    if facts["kind"] == "none":
        raise CheckFailed(
            "the base bias is lost: base_layer has a bias but DoRALinear.bias is None. The bias is part of the "
            "pretrained layer: keep it, frozen like the weight, and add it to the output."
        )
    bias = expect_tensor(obs, f"{key}/attr/bias", "DoRALinear.bias", shape=tuple(b0.shape))
    if not torch.equal(bias, b0):
        raise CheckFailed("DoRALinear.bias should hold base_layer.bias unchanged: it is the pretrained layer's bias.")
    if facts["requires_grad"]:
        raise CheckFailed(
            "the base bias is trainable (DoRALinear.bias.requires_grad is True): like the weight, it belongs to the "
            "frozen pretrained layer, so it must not require a gradient."
        )


def judge_adapter_shapes(obs: Observation, case: DoRALinearCase) -> None:
    """Check the shapes: magnitude (out_features, 1), lora_A (r, in_features), lora_B (out_features, r) as matrices."""
    out_features, in_features = case.W0.shape
    recorded_attribute(obs, case, "magnitude")
    judge_magnitude_shape(obs, f"{case.key}/attr/magnitude", case.W0, "DoRALinear.magnitude")
    for name, shape in (("lora_A", (case.r, in_features)), ("lora_B", (out_features, case.r))):
        facts = recorded_attribute(obs, case, name)
        if facts["kind"] == "module" and facts.get("type") == "Linear":
            raise CheckFailed(
                verdict(
                    f"DoRALinear.{name} is an nn.Linear: this lab keeps lora_A and lora_B as the matrices themselves, "
                    f"trainable parameters of shape (r, in_features) and (out_features, r), and the check reads them "
                    f"so (PEFT wraps each in an nn.Linear)",
                    f"Expected a parameter of shape {shape}, got an nn.Linear",
                )
            )
        if facts["kind"] in ("tensor", "parameter") and tuple(facts["shape"]) == shape[::-1] != shape:
            raise CheckFailed(
                verdict(
                    f"DoRALinear.{name} is transposed: lora_A is (r, in_features) and lora_B is (out_features, r), so "
                    f"that B·A has the weight's shape (out_features, in_features) (PEFT's layout)",
                    f"DoRALinear.{name}: expected shape {shape}, got {tuple(facts['shape'])}",
                )
            )
        expect_tensor(obs, f"{case.key}/attr/{name}", f"DoRALinear.{name}", shape=shape)


def judge_trainable(obs: Observation, case: DoRALinearCase) -> None:
    """Check that magnitude, lora_A and lora_B are trainable nn.Parameters of the base layer's dtype and device."""
    W0 = case.W0
    dtype = str(W0.dtype).removeprefix("torch.")
    for name in ("magnitude", "lora_A", "lora_B"):
        facts = obs.facts[f"{case.key}/attr/{name}"]
        if facts["dtype"] != dtype or facts["device"] != str(W0.device):
            raise CheckFailed(
                verdict(
                    f"DoRALinear.{name} is not in the base layer's dtype and device: every new parameter must be, "
                    f"because forward multiplies it with W0 and the input, and PyTorch does not mix dtypes in a matrix "
                    f"product. The check builds the layer in float64 (and float32), while a tensor you create is "
                    f"float32 on the CPU unless you say otherwise: take both from base_layer's weight (Exercise 2's "
                    f"contract)",
                    f"DoRALinear.{name}: expected {dtype} on {W0.device} (the base weight's), got {facts['dtype']} on "
                    f"{facts['device']}",
                )
            )
        if facts["kind"] != "parameter" or not facts["requires_grad"]:
            kind = (
                "a plain tensor (or buffer)"
                if facts["kind"] != "parameter"
                else "an nn.Parameter with requires_grad=False"
            )
            raise CheckFailed(
                f"{name} is not trainable: DoRALinear.{name} is {kind}. DoRA trains magnitude, lora_A and lora_B, and "
                f"an optimiser only sees the parameters a module registers that require a gradient."
            )


def judge_scaling(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.scaling is lora_alpha / r; name a known wrong value."""
    facts = recorded_attribute(obs, case, "scaling")
    scaling = facts.get("value") if facts["kind"] == "number" else facts.get("as_number")
    if not isinstance(scaling, (int, float)):
        raise CheckFailed(
            verdict("DoRALinear.scaling should be the number s = lora_alpha / r", f"Got {describe_facts(facts)}")
        )
    expected = case.lora_alpha / case.r
    if not abs(scaling - expected) > SETTING_RTOL * max(1.0, abs(expected)):  # a NaN is left to the output checks
        return
    wrong = {
        float(case.lora_alpha): "lora_alpha alone",
        case.r / case.lora_alpha: "r / lora_alpha",
        1.0: "no scaling at all",
        float(case.r): "r alone",
    }
    guess = next((name for value, name in wrong.items() if abs(scaling - value) <= SETTING_RTOL * value), None)
    raise CheckFailed(
        verdict(
            (f"DoRALinear.scaling is {guess}: " if guess else "DoRALinear.scaling is not lora_alpha / r: ")
            + "LoRA multiplies B·A by s = lora_alpha / r, so that a change of r does not change the size of the update "
            "(LoRA paper, Hu et al. 2021, §4.1; PEFT's scaling)",
            f"Expected {case.lora_alpha:g} / {case.r} = {expected:g}, got {scaling:g}",
        )
    )


def judge_sizes(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.r, in_features and out_features are the numbers the layer was built with."""
    out_features, in_features = case.W0.shape
    for name, expected in (("r", case.r), ("in_features", in_features), ("out_features", out_features)):
        facts = recorded_attribute(obs, case, name)
        if facts["kind"] != "number" or facts.get("value") != expected:
            got = facts.get("value") if facts["kind"] == "number" else describe_facts(facts)
            raise CheckFailed(verdict(f"DoRALinear.{name} should be {ROLES[name]}", f"Expected {expected}, got {got}"))


def judge_dropout(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.lora_dropout is a dropout module of probability lora_dropout (or a pass-through at 0)."""
    facts = recorded_attribute(obs, case, "lora_dropout")
    if facts["kind"] != "module" and not facts.get("callable"):
        got = describe_facts(facts)
        raise CheckFailed(
            verdict(
                f"DoRALinear.lora_dropout is {got}, not a module: {DROPOUT_CONCEPT}",
                f"Expected a module, got {got}",
            )
        )
    if facts.get("dropout_p") is not None and abs(facts["dropout_p"] - case.p) > SETTING_RTOL:
        raise CheckFailed(
            verdict(
                "DoRALinear.lora_dropout drops with another probability than the layer was built with: build the "
                "module from the constructor's lora_dropout",
                f"Expected p={case.p:g}, got p={facts['dropout_p']:g}",
            )
        )
    if case.p > 0 and facts.get("type") == "Identity":
        raise CheckFailed(
            f"DoRALinear.lora_dropout is nn.Identity but lora_dropout={case.p:g}: it never drops anything, so training "
            f"gets no dropout on the adapter path. {sentence(DROPOUT_CONCEPT)}."
        )


def judge_trainable_count(obs: Observation, case: DoRALinearCase) -> None:
    """Check that only magnitude, lora_A and lora_B train: r·(in + out) + out parameters, as in PEFT's DoRA."""
    out_features, in_features = case.W0.shape
    trainable = obs.facts.get(f"{case.key}/trainable") or []
    count = sum(int(torch.Size(shape).numel()) for _, shape in trainable)
    expected = case.r * (in_features + out_features) + out_features
    if count != expected:
        listing = ", ".join(f"{name} {tuple(shape)}" for name, shape in trainable)
        raise CheckFailed(
            verdict(
                f"only magnitude, lora_A and lora_B should train, but the trainable parameters are: {listing}. A "
                f"submodule stored on the layer (such as base_layer itself) brings its own trainable weight and bias "
                f"along: freeze what DoRA does not train",
                f"Expected r·(in+out)+out = {expected} trainable parameters, got {count}",
            )
        )


STRUCTURE_JUDGES: tuple[Callable[[Observation, DoRALinearCase], None], ...] = (
    judge_module,
    judge_attributes,
    judge_frozen_weight,
    judge_frozen_bias,
    judge_adapter_shapes,
    judge_trainable,
    judge_scaling,
    judge_sizes,
    judge_dropout,
    judge_trainable_count,
)
"""The structure judges, in the order a student meets their failures (the order of __init__'s usual lines)."""
