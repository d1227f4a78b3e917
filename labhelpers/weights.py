"""Reading weights out of models (merged LoRA/DoRA weights, plain nn.Linear weights) and measuring their change.

Every weight is returned as an (out_features, in_features) float32 CPU tensor, keyed by the module's name in the base
model (PEFT's `base_model.model.` prefix dropped), so that pretrained, fully fine-tuned and merged weights line up.

Measures: the paper's (ΔM, ΔD) (`magnitude_direction_change`); per row, 1 − cos and the excess magnitude
(`row_changes`); and the null update Figure 2 is compared with (`random_update_like`): a random update of a given
rank scaled to a given ΔD, which shows how much ΔM the row-norm geometry alone gives with no learning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn

from labhelpers.seeding import forked

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
    _check_pair(W0, W)
    # float64: for a short fine-tuning run 1 - cos is ~1e-5, close to float32's resolution of a cosine near 1.
    W0 = W0.detach().to(torch.float64)
    W = W.detach().to(torch.float64)
    norm0 = torch.linalg.vector_norm(W0, dim=1)
    norm = torch.linalg.vector_norm(W, dim=1)
    delta_m = (norm - norm0).abs().mean()
    cos = (W * W0).sum(dim=1) / (norm * norm0).clamp_min(1e-300)
    delta_d = (1 - cos).mean()
    return float(delta_m), float(delta_d)


def row_changes(W0: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure each row's turn, 1 − cos_i, and its excess magnitude e_i = ||W_i|| − ||W0_i|| / cos_i.

    Write row i's update as a part along W0_i and a part orthogonal to it: W_i = (||W0_i|| + a_i) Ŵ0_i + u_i. Then
    cos_i = (||W0_i|| + a_i) / ||W_i||, so e_i = a_i / cos_i: zero when the update only turns the row (u_i alone
    lengthens it to ||W0_i|| / cos_i), and the signed change of length along the row otherwise. Unlike ΔM, e_i does not
    grow with the turn of an added update by geometry alone; a turn that keeps the row's length has
    e_i = −||W0_i||·(1 − cos_i)/cos_i.

    Args:
        W0: (out_features, in_features), the pretrained weight.
        W: (out_features, in_features), the fine-tuned weight.

    Returns:
        (one_minus_cos, excess), each (out_features,) float64 CPU tensors.
    """
    _check_pair(W0, W)
    W0 = W0.detach().to("cpu", torch.float64)
    W = W.detach().to("cpu", torch.float64)
    norm0 = torch.linalg.vector_norm(W0, dim=1)
    norm = torch.linalg.vector_norm(W, dim=1)
    cos = (W * W0).sum(dim=1) / (norm * norm0).clamp_min(1e-300)
    return 1 - cos, norm - norm0 / cos


def random_update_like(W0: torch.Tensor, delta_d: float, rank: int | None, seed: int) -> torch.Tensor:
    """Draw a random update of a fine-tuning method's kind, scaled so that W0 + update has the given ΔD.

    The null model of Figure 2: nothing is learned, so the ΔM that W0 + update shows at this ΔD is what the geometry
    of row norms gives by itself (an update orthogonal to a row w lengthens it to ||w|| / cos θ).

    Args:
        W0: (out_features, in_features), the pretrained weight.
        delta_d: the ΔD to reach (mean over rows of 1 − cos), >= 0.
        rank: r for a LoRA/DoRA-like update B·A with B (out, r) and A (r, in) standard normal; None for a dense
            update with standard normal entries (full fine-tuning).
        seed: fixes the draw (on a forked random state: the caller's generators are left as they were).

    Returns:
        (out_features, in_features) float64 CPU tensor.
    """
    out_features, in_features = W0.shape
    with forked(seed):
        if rank is None:
            direction = torch.randn(out_features, in_features, dtype=torch.float64)
        else:
            B = torch.randn(out_features, rank, dtype=torch.float64)
            direction = B @ torch.randn(rank, in_features, dtype=torch.float64)
    return _scale_to_direction_change(W0.detach().to("cpu", torch.float64), direction, delta_d) * direction


def _scale_to_direction_change(W0: torch.Tensor, direction: torch.Tensor, delta_d: float) -> float:
    """Return t >= 0 with ΔD(W0, W0 + t·direction) = delta_d (relative tolerance 1e-10), by bracketing the root.

    Along a ray W0_i + t u_i the angle to W0_i only grows, so ΔD grows with t, from 0 towards mean_i (1 − cos(W0_i,
    u_i)); per row ||W0_i + t u_i||² = a + 2tb + t²c with a = ||W0_i||², b = W0_i·u_i, c = ||u_i||². The bracket
    shrinks by regula falsi with the Illinois step (bisection's guarantee, in about ten steps instead of forty).
    """
    a = (W0 * W0).sum(dim=1).numpy()
    b = (W0 * direction).sum(dim=1).numpy()
    c = (direction * direction).sum(dim=1).numpy()

    def miss(t: float) -> float:
        cos = (a + t * b) / np.sqrt(a * np.maximum(a + 2 * t * b + t * t * c, 1e-300))
        return float((1 - cos).mean()) - delta_d

    if delta_d <= 0:
        return 0.0
    reachable = float((1 - b / np.sqrt(np.maximum(a * c, 1e-300))).mean())
    if not delta_d < reachable:
        raise ValueError(f"ΔD={delta_d:g} cannot be reached by this update (at most {reachable:g})")
    low, high = 0.0, math.sqrt(2 * delta_d * float(a.mean() / c.mean()))  # 1 − cos ≈ t²c / 2a for small t
    f_low, f_high = -delta_d, miss(high)
    while f_high < 0:
        low, f_low, high = high, f_high, 2 * high
        f_high = miss(high)
    side = 0
    for _ in range(200):
        t = (low * f_high - high * f_low) / (f_high - f_low)
        f_t = miss(t)
        if abs(f_t) <= 1e-10 * delta_d or high - low <= 1e-15 * high:
            return t
        if f_t < 0:
            low, f_low = t, f_t
            f_high = f_high / 2 if side == -1 else f_high  # Illinois: halve the end that stays
            side = -1
        else:
            high, f_high = t, f_t
            f_low = f_low / 2 if side == 1 else f_low
            side = 1
    return t


def _check_pair(W0: torch.Tensor, W: torch.Tensor) -> None:
    if W0.shape != W.shape or W0.dim() != 2:
        raise ValueError(
            f"W0 and W must be two (out_features, in_features) matrices of one shape, got {tuple(W0.shape)} and "
            f"{tuple(W.shape)}"
        )


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
