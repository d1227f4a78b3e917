"""Exercise 3's figure (gradient norms along training) and the bonus's benchmark bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labhelpers.plots.common import COLORS, _axes, _axes_row, _label, _short_layer, lay_out


def plot_gradient_norms(stats, axes=None):
    """Plot per-step gradient norms of lora_A, lora_B (LoRA and DoRA) and DoRA's magnitude, and both losses.

    Args:
        stats: a gradients.GradientStats, from gradients.gradient_norms_during_training.
        axes: four Axes (lora_A, lora_B, magnitude, loss); None makes a new figure.

    Returns:
        The Figure.
    """
    names = ("lora_A", "lora_B", "magnitude", "loss")
    fig, axes = _axes_row(axes, len(names), (4.25, 3.8))
    steps = np.asarray(stats.steps)
    for ax, name in zip(axes, names):
        for method in ("lora", "dora"):
            history = getattr(stats, method)
            if name in history:
                ax.plot(steps, history[name], color=COLORS[method], label=_label(method), linewidth=1.2)
        ax.set_title(f"‖∂L/∂{name}‖" if name != "loss" else "regression loss (MSE)")
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-4) if name != "loss" else ax.set_yscale("log")
        ax.legend()
    out_features, in_features = stats.shape
    fig.suptitle(
        f"Gradient norms while fitting a teacher on {_short_layer(stats.layer)} ({out_features}×{in_features})"
    )
    lay_out(fig)
    return fig


def plot_bench(results: Sequence, ax=None, metric: str = "ratio"):
    """Bar-plot labhelpers.bench results: one group per (out x in, tokens, dropout), one bar per layer.

    Args:
        results: bench.BenchResult records of `bench.compare` or `bench.time_layers` (no dropout in the label).
        ax: an Axes to draw on, or None for a new figure.
        metric: "ratio" (median step time / LoRA's) or "peak" (peak MiB per step).

    Returns:
        The Axes.
    """
    if metric not in ("ratio", "peak"):
        raise ValueError(f"metric={metric!r}: use 'ratio' or 'peak'")
    fig, ax = _axes(ax, figsize=(7, 4))
    groups = [
        f"{r.settings.out_features}x{r.settings.in_features}\n{r.settings.tokens} tok"
        + (f", dropout {r.lora_dropout:g}" if r.lora_dropout is not None else "")
        for r in results
    ]
    names = list(dict.fromkeys(name for r in results for name in r.layers))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        values = []
        for r in results:
            row = r.layers.get(name)
            if row is None:
                values.append(np.nan)
            elif metric == "ratio":
                values.append(np.nan if row.ratio is None else row.ratio)
            else:
                values.append(row.peak_bytes / 2**20)
        ax.bar(np.arange(len(results)) + (k - (len(names) - 1) / 2) * width, values, width, label=name)
    if metric == "ratio":
        ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="LoRA")
        ax.set_ylabel("step time / LoRA's (median)")
    else:
        ax.set_ylabel("peak MiB per step")
    ax.set_xticks(np.arange(len(results)), groups)
    ax.set_title("One training step (forward + backward)")
    ax.legend()
    return ax
