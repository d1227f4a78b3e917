"""Reading weights out of models: merged LoRA/DoRA weights, plain nn.Linear weights, and the paper's (ΔM, ΔD).

Every weight is returned as an (out_features, in_features) float32 CPU tensor, keyed by the module's name in the base
model (PEFT's `base_model.model.` prefix dropped), so that pretrained, fully fine-tuned and merged weights line up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
import torch.nn as nn

DEFAULT_TARGETS = ("query", "value")
"""The adapted projections of the lab's comparison (module names end with these)."""


def magnitude_direction_change(W0: torch.Tensor, W: torch.Tensor) -> tuple[float, float]:
    """Measure how much a fine-tuned weight changed in magnitude and in direction (paper §3.2).

    One magnitude and one direction per output feature, i.e. per row of nn.Linear's (out, in) weight. The paper's
    notation (W in R^{d×k}, a norm "across each column") leaves the axis open; the per-output-feature convention is
    the authors' (their clarification in nbasyl/DoRA#1, and NVlabs/DoRA's code, which takes the norm over dim=1),
    and PEFT's.

    Args:
        W0: (out_features, in_features), the pretrained weight.
        W: (out_features, in_features), the fine-tuned weight.

    Returns:
        (delta_m, delta_d): ΔM = mean_i | ||W_i|| - ||W0_i|| |, ΔD = mean_i (1 - cos(W_i, W0_i)), as floats.
    """
    if W0.shape != W.shape or W0.dim() != 2:
        raise ValueError(
            f"W0 and W must be two (out_features, in_features) matrices of one shape, got {tuple(W0.shape)} and {tuple(W.shape)}"
        )
    # float64: for a short fine-tuning run 1 - cos is ~1e-5, close to float32's resolution of a cosine near 1.
    W0 = W0.detach().to(torch.float64)
    W = W.detach().to(torch.float64)
    norm0 = torch.linalg.vector_norm(W0, dim=1)
    norm = torch.linalg.vector_norm(W, dim=1)
    delta_m = (norm - norm0).abs().mean()
    cos = (W * W0).sum(dim=1) / (norm * norm0).clamp_min(1e-300)
    delta_d = (1 - cos).mean()
    return float(delta_m), float(delta_d)


def _short_name(name: str) -> str:
    """Drop PEFT's wrapper prefix so that names match the base model's module names."""
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _matches(name: str, targets: Iterable[str] | None) -> bool:
    return targets is None or any(name == t or name.endswith("." + t) for t in targets)


@torch.no_grad()
def merged_weights(peft_model: nn.Module, targets: Iterable[str] | None = DEFAULT_TARGETS) -> dict[str, torch.Tensor]:
    """Return the weight each adapted linear layer would have after merging its adapter, without merging it.

    Uses PEFT's own pieces, as `merge_and_unload` does: LoRA gives W0 + s·B·A (`get_delta_weight`); DoRA gives
    m / ||W0 + s·B·A|| * (W0 + s·B·A), the norm taken per row (`lora_magnitude_vector[...].get_weight_norm`).

    Args:
        peft_model: a model returned by `peft.get_peft_model` (LoRA or DoRA), not merged.
        targets: keep layers whose name ends with one of these; None keeps every adapted layer.

    Returns:
        {module name without PEFT's `base_model.model.` prefix: (out_features, in_features) float32 CPU tensor}.
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    weights = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or not hasattr(module, "get_delta_weight"):
            continue
        name = _short_name(name)
        if not _matches(name, targets):
            continue
        if module.merged:
            raise ValueError(f"{name} is already merged: call merged_weights before merge_and_unload / merge_adapter")
        base = module.get_base_layer().weight
        weight = base.detach().clone()
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            delta = module.get_delta_weight(adapter)
            if adapter in module.lora_magnitude_vector:
                # DoRA (paper Eq. 5): rescale every row of W0 + ΔW to the learned magnitude. The norm is the one
                # forward uses: of the unmerged base weight plus this adapter's update.
                magnitude = module.lora_magnitude_vector[adapter]
                norm = magnitude.get_weight_norm(base, transpose(delta, module.fan_in_fan_out), scaling=1)
                factor = transpose((magnitude.weight / norm).view(-1, 1), module.fan_in_fan_out)
                weight = factor * (weight + delta)
            else:
                weight = weight + delta
        weights[name] = weight.to("cpu", torch.float32)
    return weights


def linear_weights(model: nn.Module, targets: Iterable[str] | None = DEFAULT_TARGETS) -> dict[str, torch.Tensor]:
    """Return copies of the weights of a model's nn.Linear layers named like `targets`.

    The ΔM/ΔD reference W0 (of the pretrained model) and the trained weights of full fine-tuning.

    Args:
        model: a model not wrapped by PEFT, e.g. from `load_base_model`.
        targets: keep nn.Linear layers whose name ends with one of these.

    Returns:
        {module name: (out_features, in_features) float32 CPU tensor}, the same names as `merged_weights`.
    """
    return {
        _short_name(name): module.weight.detach().to("cpu", torch.float32).clone()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _matches(_short_name(name), targets)
    }


_LAYER_NAME = re.compile(r"(?:^|\.)layer\.(\d+)\.(?:.*\.)?([A-Za-z_]+)$")


def layer_and_target(name: str) -> tuple[int, str]:
    """Split a module name into its encoder layer and projection: '…layer.3.attention.self.query' -> (3, 'query')."""
    match = _LAYER_NAME.search(name)
    if match is None:
        raise ValueError(f"{name!r} does not name a projection inside an encoder layer ('…layer.<N>.….<name>')")
    return int(match.group(1)), match.group(2)
