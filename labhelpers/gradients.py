"""Exercise 3's experiment: gradient norms of a LoRA layer and a DoRA layer trained side by side on one real layer.

Both adapt copies of one pretrained nn.Linear of MiniLM and regress onto a teacher that rank-r DoRA can represent
exactly and rank-r LoRA cannot. The run's sizes travel as a `GradientRunSettings`, its result as a `GradientStats`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from labhelpers.config import resolve_device
from labhelpers.seeding import forked

GRADIENT_LAYER = "bert.encoder.layer.0.intermediate.dense"
"""The pretrained layer of the gradient study: MiniLM's first feed-forward projection, (1536, 384), non-square."""


@dataclass(frozen=True)
class GradientRunSettings:
    """The sizes of one gradient run.

    Attributes:
        layer: module name of the pretrained nn.Linear to adapt.
        steps: optimiser steps.
        r, lora_alpha: the adapters' rank and scale (scaling = lora_alpha / r).
        lr: Adam's learning rate.
        batch_size: inputs per step.
        teacher_rank: rank of the teacher's change of direction.
        seed: seeds the teacher, the inputs and lora_A (drawn on the CPU, so every device sees the same numbers).
    """

    layer: str = GRADIENT_LAYER
    steps: int = 200
    r: int = 8
    lora_alpha: float = 16.0
    lr: float = 1e-3
    batch_size: int = 64
    teacher_rank: int = 4
    seed: int = 0


@dataclass
class GradientStats:
    """Exercise 3's run: per-step gradient norms and losses of a LoRA layer and a DoRA layer on one pretrained layer.

    Attributes:
        layer: module name of the adapted nn.Linear.
        shape: its weight's (out_features, in_features).
        device: where the run ran.
        steps: [0, …, steps - 1].
        lora: {"loss", "lora_A", "lora_B": one value per step} (gradient norms read before each optimiser step).
        dora: the same, plus "magnitude".
    """

    layer: str
    shape: tuple[int, int]
    device: str
    steps: list[int]
    lora: dict[str, list[float]]
    dora: dict[str, list[float]]

    def to_json(self) -> dict:
        return asdict(self)


def gradient_norms_during_training(
    dora_layer_class: Callable[..., nn.Module],
    base_model: nn.Module | None = None,
    settings: GradientRunSettings | None = None,
    *,
    device: str | torch.device | None = None,
) -> GradientStats:
    """Train a LoRA layer (PEFT) and a DoRA layer on the same pretrained linear layer; record gradient norms per step.

    Both wrap copies of the same pretrained nn.Linear, start from the same lora_A (lora_B = 0), see the same
    batches and use Adam with the same learning rate. The task is regression onto a teacher: the same layer with
    a random rank-`teacher_rank` change of direction and a random change of every row's magnitude, which rank-r
    DoRA can represent exactly and rank-r LoRA cannot (see _teacher_weight). Inputs are standard normal (the
    layer's input is LayerNorm-ed in the model). Gradients are read after `backward` and before the optimiser
    step, so step 0 shows the initialisation (where lora_A's gradient is exactly 0). The run draws from its own
    random state: the notebook's generators are as they were afterwards.

    Args:
        dora_layer_class: `DoRALinear`-like class, called as `dora_layer_class(base_layer, r=..., lora_alpha=...,
            lora_dropout=0.0)`, with parameters `lora_A` (r, in), `lora_B` (out, r), `magnitude` (out, 1).
        base_model: the pretrained model holding `settings.layer` (not modified); None loads the packaged MiniLM.
        settings: the run's sizes; None = GradientRunSettings().
        device: where both layers train; None = LabConfig.device ($LAB_DEVICE, default CUDA when available).

    Returns:
        A GradientStats.
    """
    settings = settings or GradientRunSettings()
    device = resolve_device(device)
    pretrained = _pretrained_layer(base_model, settings.layer)
    generator = torch.Generator().manual_seed(settings.seed)
    teacher = _teacher_weight(pretrained.weight.detach(), settings.teacher_rank, generator).to(device)
    teacher_bias = None if pretrained.bias is None else pretrained.bias.detach().to(device)
    with forked(settings.seed, device):
        layers, parameters = _paired_layers(dora_layer_class, pretrained, settings, device)
        optimizers = {m: torch.optim.Adam(list(p.values()), lr=settings.lr) for m, p in parameters.items()}
        history = {m: {"loss": [], **{name: [] for name in p}} for m, p in parameters.items()}
        for _ in range(settings.steps):
            x = torch.randn(settings.batch_size, pretrained.in_features, generator=generator).to(device)
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
    return GradientStats(
        layer=settings.layer, shape=tuple(pretrained.weight.shape), device=str(device),
        steps=list(range(settings.steps)), lora=history["lora"], dora=history["dora"],
    )  # fmt: skip


def _pretrained_layer(base_model: nn.Module | None, layer: str) -> nn.Linear:
    """Return a frozen float32 CPU copy of the model's nn.Linear named `layer` (None: the packaged MiniLM's)."""
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
    return copy.deepcopy(pretrained).float().cpu().requires_grad_(False)


def _paired_layers(
    dora_layer_class: Callable[..., nn.Module], pretrained: nn.Linear, settings: GradientRunSettings, device
) -> tuple[dict[str, nn.Module], dict[str, dict[str, torch.Tensor]]]:
    """Wrap two copies of `pretrained` with PEFT's LoRA layer and your DoRA layer, from the same starting point.

    Returns:
        ({"lora": layer, "dora": layer}, {method: {parameter name: the trainable tensor}}).
    """
    from labhelpers.models import peft_layer

    # The layer class get_peft_model puts in place of an nn.Linear; its lora_A comes from the forked generator.
    lora = peft_layer(copy.deepcopy(pretrained), use_dora=False, r=settings.r, lora_alpha=settings.lora_alpha)
    lora = lora.to(device)
    dora = dora_layer_class(
        copy.deepcopy(pretrained).to(device), r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=0.0
    )
    dora = dora.to(device)
    with torch.no_grad():
        # Same starting point for both: PEFT's Kaiming-uniform lora_A, lora_B = 0.
        dora.lora_A.copy_(lora.lora_A["default"].weight)
        dora.lora_B.zero_()
    parameters = {
        "lora": {"lora_A": lora.lora_A["default"].weight, "lora_B": lora.lora_B["default"].weight},
        "dora": {"lora_A": dora.lora_A, "lora_B": dora.lora_B, "magnitude": dora.magnitude},
    }
    return {"lora": lora, "dora": dora}, parameters


def _teacher_weight(W0: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    """Return W0 with a random rank-`rank` change of direction and a random change of every row's magnitude.

    Rank-r DoRA (r >= rank) can represent this teacher exactly: its direction W0 + s·BA reaches W0 + U Vᵀ scaled
    per row, and its magnitude m reaches every row norm. Rank-r LoRA cannot: W − W0 contains (D − I) W0 for the
    diagonal D of per-row rescalings, which is full rank for a full-rank W0.

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
