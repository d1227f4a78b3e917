"""Every figure of the lab. Each function takes data (and an optional ax), returns the Figure or Axes, never shows."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from labhelpers import analysis

COLORS = {"lora": "tab:blue", "dora": "tab:orange", "pretrained": "tab:gray"}
LABELS = {"lora": "LoRA", "dora": "DoRA", "pretrained": "pretrained"}


def _pyplot():
    """Import pyplot lazily (outside Jupyter with no display, matplotlib falls back to Agg by itself)."""
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(6, 4)):
    """Return (figure, ax): the given ax and its figure, or a new figure with one ax."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize)
    return fig, ax


def _axes_row(axes, count: int, panel_size: tuple[float, float], what: str = "panel") -> tuple[object, list]:
    """Return (figure, `count` axes): the given axes and their figure, or a new figure of `count` panels in a row."""
    if axes is None:
        fig, axes = _pyplot().subplots(1, count, figsize=(panel_size[0] * count, panel_size[1]), squeeze=False)
        return fig, list(axes[0])
    axes = list(np.atleast_1d(axes))
    if len(axes) != count:
        raise ValueError(f"pass one Axes per {what} ({count}), got {len(axes)}")
    return axes[0].figure, axes


def _methods(runs: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(run["method"] for run in runs))


def _label(method: str) -> str:
    return LABELS.get(method, method)


def _short_layer(name: str) -> str:
    """'bert.encoder.layer.3.attention.self.value' -> 'L3 value'."""
    parts = name.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return f"L{parts[i + 1]} {parts[-1]}"
    return parts[-1]


def save_figure(fig, name: str, output_dir: str | os.PathLike) -> Path:
    """Write a figure as PNG.

    Args:
        fig: a matplotlib Figure (or an Axes, whose figure is saved).
        name: file name without extension, e.g. "ex4_comparison".
        output_dir: the folder (created if missing), e.g. LabConfig.output_dir.

    Returns:
        The path of the PNG.
    """
    fig = getattr(fig, "figure", fig)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Exercise 4: the comparison


def plot_loss_curves(results: Mapping, ax=None):
    """Plot the training loss along training per method: mean over seeds with a ±1 std band.

    Args:
        results: from training.run_comparison (or the loaded ex4_results.json); uses each run's
            "checkpoint_epoch" and "checkpoint_train_loss" (the mean loss of each chunk between checkpoints).
        ax: where to draw; None makes a new figure.

    Returns:
        The Axes.
    """
    _, ax = _axes(ax)
    for method in _methods(results["runs"]):
        runs = [run for run in results["runs"] if run["method"] == method]
        x = np.asarray(runs[0]["checkpoint_epoch"], dtype=float)
        losses = np.asarray([run["checkpoint_train_loss"] for run in runs], dtype=float)
        mean = losses.mean(axis=0)
        ax.plot(
            x,
            mean,
            marker="o",
            color=COLORS.get(method),
            label=f"{_label(method)} ({len(runs)} seed{'s' * (len(runs) > 1)})",
        )
        if len(runs) > 1:
            std = losses.std(axis=0, ddof=1)
            ax.fill_between(x, mean - std, mean + std, color=COLORS.get(method), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (mean over the chunk)")
    ax.set_title("Training loss (mean ± std over seeds)")
    ax.legend()
    return ax


def plot_accuracy(results: Mapping, ax=None):
    """Plot the final validation accuracy per method: a bar at the mean, ±1 std error bar, one dot per seed.

    Args:
        results: from training.run_comparison (or the loaded ex4_results.json).
        ax: where to draw; None makes a new figure.

    Returns:
        The Axes.
    """
    _, ax = _axes(ax, figsize=(4, 4))
    methods = _methods(results["runs"])
    lowest = 1.0
    for i, method in enumerate(methods):
        accuracy = np.asarray([run["val_accuracy"] for run in results["runs"] if run["method"] == method], dtype=float)
        std = accuracy.std(ddof=1) if accuracy.size > 1 else 0.0
        ax.bar(i, accuracy.mean(), yerr=std, capsize=6, color=COLORS.get(method), alpha=0.6, label=_label(method))
        offsets = np.linspace(-0.15, 0.15, accuracy.size) if accuracy.size > 1 else np.zeros(1)
        ax.scatter(i + offsets, accuracy, color="black", s=14, zorder=3)
        ax.annotate(
            f"{accuracy.mean():.3f}",
            (i, accuracy.mean() + std),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
        )
        lowest = min(lowest, float(accuracy.min()))
    ax.set_xticks(range(len(methods)), [_label(m) for m in methods])
    # Bars start at 0.5 (chance on SST-2's balanced labels), so that differences between methods are visible.
    ax.set_ylim(min(0.5, lowest - 0.02), 1.0)
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy (mean ± std, dots: seeds)")
    return ax


def plot_comparison(results: Mapping):
    """Draw the comparison side by side: loss curves and accuracy bars.

    Args:
        results: from training.run_comparison (or the loaded ex4_results.json).

    Returns:
        The Figure.
    """
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    plot_loss_curves(results, ax=left)
    plot_accuracy(results, ax=right)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Exercise 5: Figure 2 and the weights themselves


def plot_magnitude_direction(trajectory: Mapping, axes=None):
    """Draw the paper's Figure 2: ΔD (x) against ΔM (y), one point per checkpoint and layer, one panel per method.

    Colour shows the training step; the title gives Pearson's correlation of ΔD and ΔM.

    Args:
        trajectory: from analysis.decomposition_trajectory ({method: {"step", "layer", "delta_m", "delta_d", …}}).
        axes: one Axes per method; None makes a new figure.

    Returns:
        The Figure.
    """
    methods = list(trajectory)
    fig, axes = _axes_row(axes, len(methods), (5.5, 4.5), what="method")
    for ax, method in zip(axes, methods):
        rows = trajectory[method]
        r = rows.get("correlation", analysis.correlation(rows["delta_d"], rows["delta_m"]))
        points = ax.scatter(rows["delta_d"], rows["delta_m"], c=rows["step"], cmap="viridis", s=22)
        ax.set_xlabel("ΔD (mean 1 − cos per output feature)")
        ax.set_ylabel("ΔM (mean |change of row norm|)")
        ax.set_title(f"{_label(method)}: correlation {r:+.2f}")
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
        fig.colorbar(points, ax=ax, label="training step")
    fig.suptitle("Magnitude vs direction change of the adapted weights (paper Fig. 2)")
    fig.tight_layout()
    return fig


def plot_weight_heatmaps(weights: Mapping, rows: slice = slice(0, 32), cols: slice = slice(0, 32), axes=None):
    """Show the same slice of a weight matrix in several versions (e.g. pretrained, after LoRA, after DoRA).

    The first panel shows the weight; the others show their change from it (on one symmetric colour scale),
    since fine-tuning changes are far smaller than the weights.

    Args:
        weights: {title: (out_features, in_features) tensor or array}, the first being the reference.
        rows, cols: the slice to show.
        axes: one Axes per entry; None makes a new figure.

    Returns:
        The Figure.
    """
    names = list(weights)
    arrays = [np.asarray(_numpy(weights[name]))[rows, cols] for name in names]
    fig, axes = _axes_row(axes, len(names), (4.2, 3.8))
    reference = arrays[0]
    limit = float(np.abs(reference).max()) or 1.0
    image = axes[0].imshow(reference, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0].set_title(names[0])
    fig.colorbar(image, ax=axes[0], fraction=0.046)
    changes = [array - reference for array in arrays[1:]]
    change_limit = max((float(np.abs(c).max()) for c in changes), default=0.0) or 1.0
    for ax, name, change in zip(axes[1:], names[1:], changes):
        image = ax.imshow(change, cmap="PiYG", vmin=-change_limit, vmax=change_limit)
        ax.set_title(f"{name} − {names[0]}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    for ax in axes:
        ax.set_xlabel(f"input feature {cols.start or 0}…")
        ax.set_ylabel(f"output feature {rows.start or 0}…")
    return fig


def plot_magnitudes(weights: Mapping, features: slice = slice(0, 48), ax=None):
    """Plot every output feature's magnitude (row norm) in several versions of one weight, as grouped bars.

    Args:
        weights: {label: (out_features, in_features) tensor or array}, e.g. pretrained, after LoRA, after DoRA.
        features: which output features to show.
        ax: where to draw; None makes a new figure.

    Returns:
        The Axes.
    """
    _, ax = _axes(ax, figsize=(11, 3.5))
    names = list(weights)
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        norms = np.linalg.norm(np.asarray(_numpy(weights[name]), dtype=np.float64), axis=1)[features]
        index = np.arange(len(norms)) + (features.start or 0)
        ax.bar(
            index + (k - (len(names) - 1) / 2) * width,
            norms,
            width=width,
            label=name,
            color=COLORS.get(name.split()[-1].lower()),
        )
    reference = np.linalg.norm(np.asarray(_numpy(weights[names[0]]), dtype=np.float64), axis=1)[features]
    ax.set_ylim(0.9 * float(reference.min()), None)
    ax.set_xlabel("output feature")
    ax.set_ylabel("magnitude ‖W_i‖")
    ax.set_title("Magnitude of each output feature")
    ax.legend(ncol=len(names))
    return ax


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def plot_weight_changes(
    results: Mapping, layer: str | None = None, rows: slice = slice(0, 32), cols: slice = slice(0, 32)
):
    """Show one adapted layer of the real runs: weight heatmaps and per-output-feature magnitudes.

    Args:
        results: from training.run_comparison with keep_weights=True (in this session).
        layer: which adapted layer; None takes the `value` projection of the last encoder layer.
        rows, cols: the slice of the weight to show in the heatmaps.

    Returns:
        The Figure.
    """
    saved = results.get("weights") or {}
    if not saved.get("checkpoints"):
        raise ValueError(
            "these results hold no weights: run training.run_comparison (keep_weights=True) in this session"
        )
    pretrained = saved["pretrained"]
    finals = {method: run["checkpoints"][-1]["weights"] for method, run in saved["checkpoints"].items()}
    if layer is None:
        layer = [name for name in next(iter(finals.values())) if name.endswith("value")][-1]
    weights = {"pretrained": pretrained[layer], **{f"after {_label(m)}": final[layer] for m, final in finals.items()}}
    plt = _pyplot()
    fig = plt.figure(figsize=(4.2 * len(weights), 7.5))
    grid = fig.add_gridspec(2, len(weights), height_ratios=[1.1, 1])
    heat_axes = [fig.add_subplot(grid[0, k]) for k in range(len(weights))]
    plot_weight_heatmaps(weights, rows=rows, cols=cols, axes=heat_axes)
    plot_magnitudes(weights, ax=fig.add_subplot(grid[1, :]))
    fig.suptitle(f"{_short_layer(layer)} ({layer}): before and after fine-tuning")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Exercise 3: gradients along training


def plot_gradient_norms(stats: Mapping, axes=None):
    """Plot per-step gradient norms of lora_A, lora_B (LoRA and DoRA) and DoRA's magnitude, and both losses.

    Args:
        stats: from analysis.gradient_norms_during_training.
        axes: four Axes (lora_A, lora_B, magnitude, loss); None makes a new figure.

    Returns:
        The Figure.
    """
    names = ("lora_A", "lora_B", "magnitude", "loss")
    fig, axes = _axes_row(axes, len(names), (4.25, 3.8))
    steps = np.asarray(stats["steps"])
    for ax, name in zip(axes, names):
        for method in ("lora", "dora"):
            if name in stats.get(method, {}):
                ax.plot(steps, stats[method][name], color=COLORS[method], label=_label(method), linewidth=1.2)
        ax.set_title(f"‖∂L/∂{name}‖" if name != "loss" else "regression loss (MSE)")
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-4) if name != "loss" else ax.set_yscale("log")
        ax.legend()
    out_features, in_features = stats["shape"]
    fig.suptitle(
        f"Gradient norms while fitting a teacher on {_short_layer(stats['layer'])} ({out_features}×{in_features})"
    )
    fig.tight_layout()
    return fig


def plot_bench(results: Sequence[Mapping], ax=None, metric: str = "ratio"):
    """Bar-plot labhelpers.bench results: one group per (out x in, tokens), one bar per layer.

    Args:
        results: dicts returned by `bench.time_layers`.
        ax: an Axes to draw on, or None for a new figure.
        metric: "ratio" (median step time / LoRA's) or "peak" (peak MiB per step).

    Returns:
        The Axes.
    """
    if metric not in ("ratio", "peak"):
        raise ValueError(f"metric={metric!r}: use 'ratio' or 'peak'")
    fig, ax = _axes(ax, figsize=(7, 4))
    groups = [f"{r['out_features']}x{r['in_features']}\n{r['tokens']} tok" for r in results]
    names = list(dict.fromkeys(name for r in results for name in r["layers"]))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        values = []
        for r in results:
            row = r["layers"].get(name)
            if row is None:
                values.append(np.nan)
            elif metric == "ratio":
                values.append(np.nan if row["ratio"] is None else row["ratio"])
            else:
                values.append(row["peak_bytes"] / 2**20)
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
