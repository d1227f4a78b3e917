"""Your DoRALinear on SST-2: the model of the run "dora_yours", built to start exactly as PEFT's DoRA run.

For the first seed of DoRA, `build_layer_model` takes the PEFT DoRA model that seed's run starts from (your
make_peft_model on a fresh copy, with its new head and its lora_A drawn from the seeded generator) and builds a second
copy of the pretrained model in which every adapted query/value projection is your DoRALinear, holding PEFT's initial
lora_A, lora_B and magnitude, with the same head. Trained with the same batches and the same dropout stream (the random
state is put back to where PEFT's run starts), the two runs differ only in the layer's arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from labhelpers.errors import LabError
from labhelpers.weights import DEFAULT_TARGETS


class LayerUnusable(LabError):
    """Your DoRALinear cannot be put into the model (unfinished, or it fails there); the run is skipped."""


def _settings_of(peft_layer: nn.Module) -> tuple[str, int, float, float]:
    """Return (adapter, r, lora_alpha, dropout probability) of a PEFT LoRA layer's active adapter."""
    adapter = peft_layer.active_adapters[0]
    r = peft_layer.r[adapter]
    dropout = peft_layer.lora_dropout[adapter]
    return adapter, r, peft_layer.lora_alpha[adapter], float(getattr(dropout, "p", 0.0))


def _copy_into(mine: nn.Module, name: str, value: torch.Tensor, where: str) -> None:
    """Set your layer's parameter `name` to PEFT's initial value (same number of elements; (out,) fits (out, 1))."""
    target = getattr(mine, name, None)
    if not isinstance(target, torch.Tensor):
        raise LayerUnusable(f"your DoRALinear at {where} has no tensor attribute {name} (Exercise 2's names)")
    if target.numel() != value.numel():
        raise LayerUnusable(
            f"your DoRALinear at {where} has {name} of shape {tuple(target.shape)}, PEFT's has {tuple(value.shape)}"
        )
    with torch.no_grad():
        target.copy_(value.detach().reshape(target.shape))


def _your_layer(layer_class: type, base_layer: nn.Linear, peft_layer: nn.Module, where: str) -> nn.Module:
    """Build your DoRALinear around `base_layer` with the PEFT layer's settings and initial parameters."""
    adapter, r, lora_alpha, dropout = _settings_of(peft_layer)
    try:
        mine = layer_class(base_layer, r=r, lora_alpha=lora_alpha, lora_dropout=dropout)
    except Exception as error:  # your constructor, whatever it raises
        raise LayerUnusable(f"DoRALinear(...) at {where} raised {type(error).__name__}: {error}") from error
    _copy_into(mine, "lora_A", peft_layer.lora_A[adapter].weight, where)
    _copy_into(mine, "lora_B", peft_layer.lora_B[adapter].weight, where)
    _copy_into(mine, "magnitude", peft_layer.lora_magnitude_vector[adapter].weight, where)
    scaling = getattr(mine, "scaling", None)
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not math.isclose(scaling, lora_alpha / r):
        raise LayerUnusable(f"your DoRALinear at {where} has scaling={scaling!r}, PEFT's is {lora_alpha / r:g}")
    return mine


def build_layer_model(peft_model: nn.Module, base_copy: nn.Module, layer_class: type) -> nn.Module:
    """Put your DoRALinear into `base_copy` wherever the PEFT DoRA model adapts a query/value projection.

    Args:
        peft_model: the PEFT DoRA model of the same seed, before any training.
        base_copy: another copy of the pretrained model with the same new head (modified in place).
        layer_class: your DoRALinear, `DoRALinear(base_layer, r, lora_alpha, lora_dropout)`.

    Returns:
        `base_copy`, with your layers in place and only their lora_A, lora_B, magnitude and the head trainable.
        Raises LayerUnusable when your layer cannot be built or lacks Exercise 2's attributes.
    """
    from peft.tuners.lora import LoraLayer

    base_copy.requires_grad_(False)
    placed = 0
    for name, module in peft_model.named_modules():
        short = name.removeprefix("base_model.model.")
        if not isinstance(module, LoraLayer) or not any(short.endswith("." + t) for t in DEFAULT_TARGETS):
            continue
        parent_name, _, child = short.rpartition(".")
        parent = base_copy.get_submodule(parent_name)
        mine = _your_layer(layer_class, getattr(parent, child), module, short)
        for attribute in ("lora_A", "lora_B", "magnitude"):
            getattr(mine, attribute).requires_grad_(True)
        setattr(parent, child, mine)
        placed += 1
    if placed == 0:
        raise LayerUnusable("the PEFT DoRA model has no query/value adapter to put your layer in place of")
    head = getattr(base_copy, "classifier", None)
    if head is not None:
        head.requires_grad_(True)
    return base_copy


def check_forward(model: nn.Module, batch: dict, device: torch.device) -> None:
    """Run one evaluation forward pass of the model with your layers; LayerUnusable when it fails or is not finite."""
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
    except Exception as error:  # your forward, whatever it raises
        raise LayerUnusable(f"the model with your DoRALinear failed: {type(error).__name__}: {error}") from error
    if not bool(torch.isfinite(logits).all()):
        raise LayerUnusable("the model with your DoRALinear gives non-finite outputs")
