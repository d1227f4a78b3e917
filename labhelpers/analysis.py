"""How fine-tuning changes the weights: merged weights, the paper's (ΔM, ΔD), and gradient statistics."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

DEFAULT_TARGETS = ("query", "value")
"""The adapted projections of the lab's comparison (module names end with these)."""

GRADIENT_LAYER = "bert.encoder.layer.0.intermediate.dense"
"""The pretrained layer of the gradient study: MiniLM's first feed-forward projection, (1536, 384), non-square."""


def magnitude_direction_change(W0: torch.Tensor, W: torch.Tensor) -> tuple[float, float]:
    """Measure how much a fine-tuned weight changed in magnitude and in direction (paper §3.2).

    One magnitude and one direction per output feature, i.e. per row of nn.Linear's weight (the paper writes W as
    (in, out) and says "column"; it is the same per-output-feature norm).

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


def pretrained_weights(model: nn.Module, targets: Iterable[str] | None = DEFAULT_TARGETS) -> dict[str, torch.Tensor]:
    """Return copies of the weights of a model's linear layers named like `targets` (the ΔM/ΔD reference W0).

    Args:
        model: a base model (not wrapped by PEFT), e.g. from `load_base_model`.
        targets: keep nn.Linear layers whose name ends with one of these.

    Returns:
        {module name: (out_features, in_features) float32 CPU tensor}, the same names as `merged_weights`.
    """
    return {
        _short_name(name): module.weight.detach().to("cpu", torch.float32).clone()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _matches(_short_name(name), targets)
    }


def correlation(xs: Iterable[float], ys: Iterable[float]) -> float:
    """Return Pearson's correlation coefficient of two equally long sequences (nan when one is constant).

    Args:
        xs: (N,) numbers.
        ys: (N,) numbers.

    Returns:
        r in [-1, 1], or nan when N < 2 or either sequence has no spread.
    """
    x = np.asarray(list(xs), dtype=np.float64)
    y = np.asarray(list(ys), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"xs and ys must be equally long, got {x.size} and {y.size}")
    if x.size < 2:
        return math.nan
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan


def decomposition_trajectory(
    results: Mapping,
    measure: Callable[[torch.Tensor, torch.Tensor], tuple[float, float]] = magnitude_direction_change,
) -> dict[str, dict]:
    """Measure (ΔM, ΔD) of every adapted layer at every saved checkpoint against the pretrained weights (Figure 2).

    Args:
        results: what `training.run_comparison` returned; its "weights" hold the pretrained weights and, for one
            seed of each method, the merged weights at each checkpoint.
        measure: `measure(W0, W) -> (delta_m, delta_d)`, e.g. your `magnitude_direction_change`.

    Returns:
        {method: {"seed", "step", "epoch", "layer", "delta_m", "delta_d": lists with one entry per (checkpoint, layer),
        "correlation": Pearson r of ΔD and ΔM}}. The pretrained checkpoint (step 0, ΔM = ΔD = 0) is left out.
    """
    saved = results.get("weights") if isinstance(results, Mapping) else None
    if not saved or not saved.get("checkpoints"):
        raise ValueError(
            "these results hold no checkpoint weights: run training.run_comparison (with keep_weights=True) in this "
            "session; the weights are kept in memory, not in ex4_results.json"
        )
    pretrained = saved["pretrained"]
    trajectory = {}
    for method, run in saved["checkpoints"].items():
        rows = {"seed": run["seed"], "step": [], "epoch": [], "layer": [], "delta_m": [], "delta_d": []}
        for checkpoint in run["checkpoints"]:
            if checkpoint["step"] == 0:
                continue
            for layer, W in checkpoint["weights"].items():
                delta_m, delta_d = measure(pretrained[layer], W)
                rows["step"].append(checkpoint["step"])
                rows["epoch"].append(checkpoint["epoch"])
                rows["layer"].append(layer)
                rows["delta_m"].append(float(delta_m))
                rows["delta_d"].append(float(delta_d))
        rows["correlation"] = correlation(rows["delta_d"], rows["delta_m"])
        trajectory[method] = rows
    return trajectory


# ---------------------------------------------------------------------------------------------------------------
# Gradient statistics (Exercise 3)


def _teacher_weight(W0: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    """Return W0 with a random rank-`rank` change of direction and a random change of every row's magnitude.

    Args:
        W0: (out_features, in_features).

    Returns:
        (out_features, in_features): rows W_i = m_i (W0 + U Vᵀ)_i / ||(W0 + U Vᵀ)_i||.
    """
    out_features, in_features = W0.shape
    row_norm = torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    # The low-rank change is ~30 % of a row's length: a clear turn of the direction, reachable by rank r.
    U = torch.randn(out_features, rank, generator=generator, dtype=W0.dtype) / math.sqrt(rank)
    V = torch.randn(rank, in_features, generator=generator, dtype=W0.dtype) / math.sqrt(in_features)
    turned = W0 + 0.3 * row_norm * (U @ V)
    # Magnitudes scaled by e^{N(0, 0.2²)}: about ±20 % per output feature.
    magnitude = row_norm * torch.exp(0.2 * torch.randn(out_features, 1, generator=generator, dtype=W0.dtype))
    return magnitude * turned / torch.linalg.vector_norm(turned, dim=1, keepdim=True)


def _grad_norm(parameter: torch.Tensor) -> float:
    return 0.0 if parameter.grad is None else float(parameter.grad.detach().norm())


def gradient_norms_during_training(
    dora_layer_class: Callable[..., nn.Module],
    base_model: nn.Module | None = None,
    *,
    layer: str = GRADIENT_LAYER,
    steps: int = 200,
    r: int = 8,
    lora_alpha: float = 16.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    teacher_rank: int = 4,
    seed: int = 0,
) -> dict:
    """Train a LoRA layer (PEFT) and a DoRA layer on the same pretrained linear layer; record gradient norms per step.

    Both wrap copies of the same pretrained nn.Linear, start from the same lora_A (lora_B = 0), see the same
    batches and use Adam with the same learning rate. The task is regression onto a teacher: the same layer with
    a random rank-`teacher_rank` change of direction and a random change of every row's magnitude. Inputs are
    standard normal (the layer's input is LayerNorm-ed in the model). Gradients are read after `backward` and
    before the optimiser step, so step 0 shows the initialisation (where lora_A's gradient is exactly 0).

    Args:
        dora_layer_class: `DoRALinear`-like class, called as `dora_layer_class(base_layer, r=..., lora_alpha=...,
            lora_dropout=0.0)`, with parameters `lora_A` (r, in), `lora_B` (out, r), `magnitude` (out, 1).
        base_model: the pretrained model holding `layer`; None loads the packaged MiniLM.
        layer: module name of the nn.Linear to adapt.
        steps: optimiser steps.
        r, lora_alpha: the adapters' rank and scale (scaling = lora_alpha / r).
        lr: Adam's learning rate.
        batch_size: inputs per step.
        teacher_rank: rank of the teacher's change of direction.
        seed: seeds the teacher, the inputs and lora_A.

    Returns:
        {"layer": name, "shape": (out_features, in_features), "steps": [0, …, steps-1],
         "lora": {"loss", "lora_A", "lora_B": per-step lists},
         "dora": {"loss", "lora_A", "lora_B", "magnitude": per-step lists}}.
    """
    from labhelpers.models import peft_layer

    if base_model is None:
        from labhelpers.models import load_base_model

        base_model, _ = load_base_model(verbose=False)
    try:
        pretrained = base_model.get_submodule(layer)
    except AttributeError:
        raise ValueError(
            f"the model has no layer {layer!r}: pass the name of an nn.Linear, e.g. {GRADIENT_LAYER!r}"
        ) from None
    if not isinstance(pretrained, nn.Linear):
        raise ValueError(f"{layer!r} is a {type(pretrained).__name__}, not an nn.Linear")
    pretrained = copy.deepcopy(pretrained).float().cpu().requires_grad_(False)
    out_features, in_features = pretrained.weight.shape

    generator = torch.Generator().manual_seed(seed)
    teacher = _teacher_weight(pretrained.weight.detach(), teacher_rank, generator)
    teacher_bias = None if pretrained.bias is None else pretrained.bias.detach()

    torch.manual_seed(seed)
    # The layer class get_peft_model puts in place of an nn.Linear.
    lora = peft_layer(copy.deepcopy(pretrained), use_dora=False, r=r, lora_alpha=lora_alpha)
    dora = dora_layer_class(copy.deepcopy(pretrained), r=r, lora_alpha=lora_alpha, lora_dropout=0.0)
    with torch.no_grad():
        # Same starting point for both: PEFT's Kaiming-uniform lora_A, lora_B = 0.
        dora.lora_A.copy_(lora.lora_A["default"].weight)
        dora.lora_B.zero_()

    parameters = {
        "lora": {"lora_A": lora.lora_A["default"].weight, "lora_B": lora.lora_B["default"].weight},
        "dora": {"lora_A": dora.lora_A, "lora_B": dora.lora_B, "magnitude": dora.magnitude},
    }
    layers = {"lora": lora, "dora": dora}
    optimizers = {m: torch.optim.Adam(list(p.values()), lr=lr) for m, p in parameters.items()}
    history = {m: {"loss": [], **{name: [] for name in p}} for m, p in parameters.items()}
    for step in range(steps):
        x = torch.randn(batch_size, in_features, generator=generator)
        target = nn.functional.linear(x, teacher, teacher_bias)
        for method, module in layers.items():
            module.train()
            loss = nn.functional.mse_loss(module(x), target)
            loss.backward()
            history[method]["loss"].append(float(loss.detach()))
            for name, parameter in parameters[method].items():
                history[method][name].append(_grad_norm(parameter))
            optimizers[method].step()
            optimizers[method].zero_grad()
    return {"layer": layer, "shape": (out_features, in_features), "steps": list(range(steps)), **history}
