"""What a checkpoint keeps of a run, and the merged weights Figure 2 measures, rebuilt from it.

A checkpoint keeps the least that rebuilds every query/value weight: for full fine-tuning the weights themselves, for
LoRA and DoRA each adapted layer's `lora_A`, `lora_B`, `scaling` (and DoRA's `magnitude`), whether the layer is PEFT's
or your DoRALinear. `weights_from_state` turns that into merged weights with PEFT's own arithmetic (`get_delta_weight`
and DoRA's `get_weight_norm`, as `merge_and_unload` does), the same way during training and after a reload, so that a
reloaded comparison measures exactly the weights the run measured.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from labhelpers.training.settings import YOUR_LAYER
from labhelpers.weights import DEFAULT_TARGETS, linear_weights

ADAPTER_KEYS = ("lora_A", "lora_B", "magnitude", "scaling")
"""The per-layer entries of an adapter checkpoint: '<layer>.lora_A' (r, in), '.lora_B' (out, r), '.magnitude' (out,)
for DoRA only, '.scaling' (1,) float64."""


def _targeted(name: str) -> bool:
    return any(name == t or name.endswith("." + t) for t in DEFAULT_TARGETS)


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", torch.float32).clone()


def _scaling(value: float) -> torch.Tensor:
    return torch.tensor([float(value)], dtype=torch.float64)


def peft_state(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the adapter parameters of every query/value layer of a PEFT model (its active adapter).

    Returns:
        {'<layer>.<key>': tensor} for the keys of ADAPTER_KEYS, float32 CPU copies; layer names without PEFT's
        `base_model.model.` prefix.
    """
    from peft.tuners.lora import LoraLayer

    state = {}
    for name, module in peft_model.named_modules():
        name = name.removeprefix("base_model.model.")
        if not isinstance(module, LoraLayer) or not _targeted(name):
            continue
        adapter = module.active_adapters[0]
        state[f"{name}.lora_A"] = _cpu(module.lora_A[adapter].weight)
        state[f"{name}.lora_B"] = _cpu(module.lora_B[adapter].weight)
        state[f"{name}.scaling"] = _scaling(module.scaling[adapter])
        if adapter in module.lora_magnitude_vector:
            state[f"{name}.magnitude"] = _cpu(module.lora_magnitude_vector[adapter].weight).reshape(-1)
    return state


def layer_state(model: nn.Module, layer_class: type) -> dict[str, torch.Tensor]:
    """Return the parameters of every DoRALinear of yours in a model (Exercise 2's names: lora_A, lora_B, magnitude).

    Returns:
        {'<layer>.<key>': tensor} for the keys of ADAPTER_KEYS, float32 CPU copies (magnitude flattened to (out,)).
    """
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, layer_class) and _targeted(name):
            state[f"{name}.lora_A"] = _cpu(module.lora_A)
            state[f"{name}.lora_B"] = _cpu(module.lora_B)
            state[f"{name}.magnitude"] = _cpu(module.magnitude).reshape(-1)
            state[f"{name}.scaling"] = _scaling(module.scaling)
    return state


def checkpoint_state(model: nn.Module, method: str, layer_class: type | None = None) -> dict[str, torch.Tensor]:
    """Return what a checkpoint of `method` keeps: the query/value weights (full) or the adapters' parameters."""
    if method == "full":
        return linear_weights(model)
    if method == YOUR_LAYER:
        return layer_state(model, layer_class)
    return peft_state(model)


@torch.no_grad()
def weights_from_state(
    state: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rebuild the merged query/value weights of a checkpoint from what it kept.

    LoRA: W0 + s·B·A. DoRA (paper Eq. 5): m · V/‖V‖_c with V = W0 + s·B·A, the norm per row (output feature). The
    operations are PEFT's (`get_delta_weight`, `get_weight_norm`, `merge_and_unload`), in the same order.

    Args:
        state: from checkpoint_state (full fine-tuning: the weights themselves).
        pretrained: {layer: (out, in) float32 CPU tensor}, W0.

    Returns:
        {layer: (out_features, in_features) float32 CPU tensor}, for every layer of `pretrained` the state covers.
    """
    weights = {}
    for layer, W0 in pretrained.items():
        if layer in state:
            weights[layer] = state[layer]
            continue
        if f"{layer}.lora_A" not in state:
            continue
        A, B = state[f"{layer}.lora_A"], state[f"{layer}.lora_B"]
        delta = (B @ A) * float(state[f"{layer}.scaling"])
        magnitude = state.get(f"{layer}.magnitude")
        if magnitude is None:
            weights[layer] = W0 + delta
            continue
        norm = torch.linalg.norm(W0 + delta, dim=1).to(W0.dtype)
        weights[layer] = (magnitude / norm).view(-1, 1) * (W0 + delta)
    return weights
