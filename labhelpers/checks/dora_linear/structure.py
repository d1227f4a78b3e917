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
from labhelpers.probes.core import Observation
from labhelpers.probes.dora_linear import DoRALinearCase

ADAPTER_SHAPES = {
    "lora_A": "nn.Parameter of shape (r, in_features)",
    "lora_B": "nn.Parameter of shape (out_features, r), zeros",
}
"""How the messages describe lora_A and lora_B."""


def recorded_attribute(obs: Observation, case: DoRALinearCase, name: str, how: str) -> dict[str, Any]:
    """Return the facts the probe recorded of DoRALinear.<name>, or fail saying how to set it in __init__."""
    facts = obs.facts.get(f"{case.key}/attr/{name}")
    if facts is None:
        raise CheckFailed(f"DoRALinear.{name} was not recorded: the check stopped before it.", missing=True)
    if facts.get("kind") == "missing":
        raise CheckFailed(f"DoRALinear has no attribute `{name}`: in __init__, set {how}.")
    return facts


def judge_module(obs: Observation, case: DoRALinearCase) -> None:
    """Check that the constructor gave an nn.Module and left base_layer's weight and bias as they were."""
    key, what = case.key, case.what
    layer = obs.facts.get(f"{key}/layer")
    if layer is None:
        raise CheckFailed(f"{what} was not built: the check stopped before it.", missing=True)
    if layer.get("kind") != "module":
        raise CheckFailed(
            f"{what} gave {describe_facts(layer)}, not an nn.Module: DoRALinear must subclass nn.Module and call "
            f"super().__init__()."
        )
    if not unchanged(obs, f"{key}/base_after/weight", case.W0) or (
        case.b0 is not None and not unchanged(obs, f"{key}/base_after/bias", case.b0)
    ):
        raise CheckFailed(
            f"{what} changed base_layer's weight or bias in place: keep the pretrained layer unchanged (no in-place "
            f"ops such as .div_() or .data assignments on it; compute new tensors instead)."
        )


def judge_frozen_weight(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.weight holds base_layer.weight unchanged, frozen."""
    recorded_attribute(
        obs,
        case,
        "weight",
        "self.weight = the frozen base weight (nn.Parameter(base_layer.weight.detach(), requires_grad=False))",
    )
    weight = expect_tensor(obs, f"{case.key}/attr/weight", "DoRALinear.weight", shape=tuple(case.W0.shape))
    if not torch.equal(weight, case.W0):
        raise CheckFailed(
            f"DoRALinear.weight should hold base_layer.weight unchanged; {case.what} stores different values."
        )
    if obs.facts[f"{case.key}/attr/weight"]["requires_grad"]:
        raise CheckFailed(
            "the base weight is trainable (DoRALinear.weight.requires_grad is True): freeze it with "
            "requires_grad=False; DoRA trains only magnitude, lora_A and lora_B."
        )


def judge_frozen_bias(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.bias holds base_layer.bias unchanged and frozen, or None when the base has none."""
    key, b0 = case.key, case.b0
    facts = recorded_attribute(obs, case, "bias", "self.bias = the frozen base bias, or None when base_layer has none")
    if b0 is None:
        if facts["kind"] != "none":
            stored = obs.tensors.get(f"{key}/attr/bias")
            if stored is None or bool(stored.any()) or facts.get("requires_grad"):
                raise CheckFailed("base_layer has no bias (bias=False), so DoRALinear.bias should be None.")
        return
    if facts["kind"] == "none":
        raise CheckFailed(
            "the base bias is lost: base_layer has a bias but DoRALinear.bias is None; keep it (self.bias = "
            "nn.Parameter(base_layer.bias.detach(), requires_grad=False)) and add it to the output."
        )
    bias = expect_tensor(obs, f"{key}/attr/bias", "DoRALinear.bias", shape=tuple(b0.shape))
    if not torch.equal(bias, b0):
        raise CheckFailed("DoRALinear.bias should hold base_layer.bias unchanged.")
    if facts["requires_grad"]:
        raise CheckFailed(
            "the base bias is trainable (DoRALinear.bias.requires_grad is True): freeze it with requires_grad=False."
        )


def judge_adapter_shapes(obs: Observation, case: DoRALinearCase) -> None:
    """Check the shapes: magnitude (out_features, 1), lora_A (r, in_features), lora_B (out_features, r) as matrices."""
    out_features, in_features = case.W0.shape
    recorded_attribute(
        obs, case, "magnitude", "self.magnitude = nn.Parameter(row norms of the weight), shape (out_features, 1)"
    )
    judge_magnitude_shape(obs, f"{case.key}/attr/magnitude", case.W0, "DoRALinear.magnitude")
    for name, shape in (("lora_A", (case.r, in_features)), ("lora_B", (out_features, case.r))):
        facts = recorded_attribute(obs, case, name, f"self.{name} = {ADAPTER_SHAPES[name]}")
        if facts["kind"] == "module" and facts.get("type") == "Linear":
            raise CheckFailed(
                f"DoRALinear.{name} is an nn.Linear: store its matrix directly as nn.Parameter of shape {shape}, as the "
                f"lab asks."
            )
        if facts["kind"] in ("tensor", "parameter") and tuple(facts["shape"]) == shape[::-1] != shape:
            raise CheckFailed(
                f"DoRALinear.{name} has shape {tuple(facts['shape'])}, expected {shape}: PEFT's lora_A is (r, "
                f"in_features) and lora_B is (out_features, r), so that B @ A has the weight's shape (out_features, "
                f"in_features)."
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
                f"DoRALinear.{name} has dtype torch.{facts['dtype']} on {facts['device']}, but the base layer is "
                f"torch.{dtype} on "
                f"{W0.device}: create it with dtype=base_layer.weight.dtype, device=base_layer.weight.device."
            )
        if facts["kind"] != "parameter" or not facts["requires_grad"]:
            kind = (
                "a plain tensor (or buffer)"
                if facts["kind"] != "parameter"
                else "an nn.Parameter with requires_grad=False"
            )
            raise CheckFailed(
                f"{name} is not trainable: DoRALinear.{name} is {kind}. Make it nn.Parameter(...) (trainable), since "
                f"DoRA trains magnitude, lora_A and lora_B."
            )


def judge_scaling(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.scaling is lora_alpha / r; name a known wrong value."""
    facts = recorded_attribute(obs, case, "scaling", "self.scaling = lora_alpha / r")
    scaling = facts.get("value") if facts["kind"] == "number" else facts.get("as_number")
    if not isinstance(scaling, (int, float)):
        raise CheckFailed(f"DoRALinear.scaling should be the number lora_alpha / r, got {describe_facts(facts)}.")
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
        f"DoRALinear.scaling is {scaling:g}"
        + (f", which is {guess}" if guess else "")
        + f", expected lora_alpha / r = {case.lora_alpha:g} / {case.r} = {expected:g}, as in PEFT."
    )


def judge_sizes(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.r, in_features and out_features are the numbers the layer was built with."""
    out_features, in_features = case.W0.shape
    for name, expected in (("r", case.r), ("in_features", in_features), ("out_features", out_features)):
        facts = recorded_attribute(obs, case, name, f"self.{name}")
        if facts["kind"] != "number" or facts.get("value") != expected:
            got = facts.get("value") if facts["kind"] == "number" else describe_facts(facts)
            raise CheckFailed(f"DoRALinear.{name} is {got}, expected {expected}.")


def judge_dropout(obs: Observation, case: DoRALinearCase) -> None:
    """Check that DoRALinear.lora_dropout is nn.Dropout(lora_dropout), or nn.Identity() when lora_dropout is 0."""
    facts = recorded_attribute(
        obs,
        case,
        "lora_dropout",
        "self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()",
    )
    if facts["kind"] != "module" and not facts.get("callable"):
        raise CheckFailed(
            f"DoRALinear.lora_dropout should be a module (nn.Dropout(p) or nn.Identity()), got {describe_facts(facts)}."
        )
    if facts.get("dropout_p") is not None and abs(facts["dropout_p"] - case.p) > SETTING_RTOL:
        raise CheckFailed(f"DoRALinear.lora_dropout has p={facts['dropout_p']}, expected lora_dropout={case.p}.")
    if case.p > 0 and facts.get("type") == "Identity":
        raise CheckFailed(
            f"DoRALinear.lora_dropout is nn.Identity but lora_dropout={case.p}: use nn.Dropout(lora_dropout)."
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
            f"DoRALinear has {count} trainable parameters, expected r*(in+out)+out = {expected}: only magnitude, "
            f"lora_A and lora_B should be trainable, but the trainable ones are: {listing}. Freeze the rest (e.g. a "
            f"stored base_layer: base_layer.requires_grad_(False))."
        )


STRUCTURE_JUDGES: tuple[Callable[[Observation, DoRALinearCase], None], ...] = (
    judge_module,
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
