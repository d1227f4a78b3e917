"""Every figure of the lab. Each function takes data (and an optional ax), returns the Figure or Axes, never shows."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from labhelpers.stats import slope

COLORS = {"full": "tab:green", "lora": "tab:blue", "dora": "tab:orange", "pretrained": "tab:gray"}
LABELS = {"full": "full FT", "lora": "LoRA", "dora": "DoRA", "pretrained": "pretrained"}
CHECKPOINT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


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


def _label(method: str) -> str:
    return LABELS.get(method, method)


def _color_of(name: str):
    """The colour of the method a label names ('after DoRA' -> DoRA's), or None for matplotlib's next colour."""
    return next((COLORS[m] for m, label in LABELS.items() if name == label or name.endswith(" " + label)), None)


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


def plot_loss_curves(comparison, ax=None):
    """Plot the training loss along training per method: mean over seeds with a ±1 std band.

    Args:
        comparison: a training.Comparison; uses each run's checkpoints (epoch, mean loss since the previous one).
        ax: where to draw; None makes a new figure.

    Returns:
        The Axes.
    """
    _, ax = _axes(ax)
    for method in comparison.methods:
        runs = comparison.runs_of(method)
        x = np.asarray([c.epoch for c in runs[0].checkpoints], dtype=float)
        losses = np.asarray([[c.train_loss for c in run.checkpoints] for run in runs], dtype=float)
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
    ax.set_ylabel("training loss (mean since the previous point)")
    ax.set_title("Training loss (mean ± std over seeds)")
    ax.legend()
    return ax


def plot_accuracy(comparison, ax=None):
    """Plot the final validation accuracy per method: a bar at the mean, ±1 std error bar, one dot per seed.

    Dots of the same seed are joined by a grey line: those runs share batches and head init (they are paired).

    Args:
        comparison: a training.Comparison.
        ax: where to draw; None makes a new figure.

    Returns:
        The Axes.
    """
    _, ax = _axes(ax, figsize=(4.5, 4))
    methods = comparison.methods
    lowest = 1.0
    by_seed: dict[int, list[tuple[int, float]]] = {}
    for i, method in enumerate(methods):
        runs = comparison.runs_of(method)
        accuracy = np.asarray([run.val_accuracy for run in runs], dtype=float)
        std = accuracy.std(ddof=1) if accuracy.size > 1 else 0.0
        ax.bar(i, accuracy.mean(), yerr=std, capsize=6, color=COLORS.get(method), alpha=0.6, label=_label(method))
        ax.scatter(np.full(accuracy.size, i), accuracy, color="black", s=14, zorder=3)
        for run in runs:
            by_seed.setdefault(run.seed, []).append((i, run.val_accuracy))
        ax.annotate(
            f"{accuracy.mean():.3f}",
            (i, accuracy.mean() + std),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
        )
        lowest = min(lowest, float(accuracy.min()))
    for points in by_seed.values():
        if len(points) > 1:
            xs, ys = zip(*points)
            ax.plot(xs, ys, color="gray", linewidth=0.8, alpha=0.7, zorder=2)
    ax.set_xticks(range(len(methods)), [_label(m) for m in methods])
    # Bars start at 0.5 (chance on SST-2's balanced labels), so that differences between methods are visible.
    ax.set_ylim(min(0.5, lowest - 0.02), 1.0)
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy (mean ± std; dots: seeds)")
    return ax


def plot_comparison(comparison):
    """Draw the comparison side by side: loss curves and accuracy bars.

    Args:
        comparison: a training.Comparison.

    Returns:
        The Figure.
    """
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11.5, 4), gridspec_kw={"width_ratios": [3, 2]})
    plot_loss_curves(comparison, ax=left)
    plot_accuracy(comparison, ax=right)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Exercise 5: Figure 2 and the weights themselves


def plot_figure2(trajectory, method: str, axes=None):
    """Draw the paper's Figure 2 for one method: ΔD (x) against ΔM (y), one panel per target (query, then value).

    One point per seed, layer and checkpoint: colour = layer, marker = checkpoint; one least-squares line per seed.
    Each panel's title gives Pearson's r and the within-checkpoint r (mean ± std over seeds) and, for query,
    the paper's correlation.

    Args:
        trajectory: an analysis.Trajectory.
        method: "full", "lora" or "dora".
        axes: one Axes per target; None makes a new figure.

    Returns:
        The Figure.
    """
    from matplotlib.lines import Line2D

    targets = [t for t in trajectory.targets if trajectory.select(method, t)]
    if not targets:
        raise ValueError(f"the trajectory has no points of method {method!r}; it has {trajectory.methods}")
    fig, axes = _axes_row(axes, len(targets), (5.5, 4.6), what="target")
    paper = trajectory.paper.get("correlation", {})
    cmap = _pyplot().get_cmap("viridis")
    for ax, target in zip(axes, targets):
        points = trajectory.select(method, target)
        layers = sorted({p.layer for p in points})
        checkpoints = sorted({p.checkpoint for p in points})
        colour = {layer: cmap(k / max(1, len(layers) - 1)) for k, layer in enumerate(layers)}
        for point in points:
            ax.scatter(
                point.delta_d,
                point.delta_m,
                color=colour[point.layer],
                marker=CHECKPOINT_MARKERS[(point.checkpoint - 1) % len(CHECKPOINT_MARKERS)],
                s=26,
                alpha=0.85,
                edgecolors="none",
            )
        for seed in trajectory.seeds(method):
            own = trajectory.select(method, target, seed)
            x = np.asarray([p.delta_d for p in own])
            b = slope(x, [p.delta_m for p in own])
            a = np.mean([p.delta_m for p in own]) - b * x.mean()
            line_x = np.linspace(x.min(), x.max(), 2)
            ax.plot(line_x, a + b * line_x, color="black", linewidth=1, alpha=0.6)
        mean, std, n = trajectory.spread(method, target, "pearson")
        within, within_std, _ = trajectory.spread(method, target, "within_checkpoint")
        spread = f" ± {std:.2f}" if n > 1 else ""
        within_spread = f" ± {within_std:.2f}" if n > 1 else ""
        reference = f"; paper {paper[method]:+.2f}" if target == "query" and method in paper else ""
        ax.set_title(
            f"{target} (paper Fig. {2 if target == 'query' else 7}): r = {mean:+.2f}{spread}{reference}\n"
            f"within a checkpoint r = {within:+.2f}{within_spread}; {n} seed{'s' * (n > 1)}",
            fontsize=10,
        )
        ax.set_xlabel("ΔD (mean 1 − cos per output feature)")
        ax.set_ylabel("ΔM (mean |change of row norm|)")
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
        handles = [
            Line2D([], [], color=colour[layer], marker="o", linestyle="", label=f"layer {layer}") for layer in layers
        ]
        total = len(checkpoints)
        handles += [
            Line2D([], [], color="gray", marker=CHECKPOINT_MARKERS[(k - 1) % len(CHECKPOINT_MARKERS)], linestyle="",
                   label=f"{100 * k / total:.0f} % of training")
            for k in checkpoints
        ]  # fmt: skip
        handles.append(Line2D([], [], color="black", alpha=0.6, label="least squares (per seed)"))
        ax.legend(handles=handles, fontsize=7, ncol=2, loc="best")
    fig.suptitle(f"{_label(method)}: magnitude vs direction change of the adapted weights, along training")
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
            color=_color_of(name),
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


def plot_weight_changes(comparison, layer: str | None = None, rows: slice = slice(0, 32), cols: slice = slice(0, 32)):
    """Show one adapted layer of the real runs: weight heatmaps and per-output-feature magnitudes.

    Uses each method's first seed, at its final checkpoint.

    Args:
        comparison: a training.Comparison from run_comparison with keep_weights=True (in this session).
        layer: which adapted layer; None takes the `query` projection of the last encoder layer (Figure 2's target).
        rows, cols: the slice of the weight to show in the heatmaps.

    Returns:
        The Figure.
    """
    finals, seeds = {}, set()
    for method in comparison.methods:
        first = comparison.runs_of(method)[0]
        if first.checkpoints[-1].weights:
            finals[method] = first.checkpoints[-1].weights
            seeds.add(first.seed)
    if not comparison.pretrained or not finals:
        raise ValueError(
            "these results hold no weights: run training.run_comparison (keep_weights=True) in this session"
        )
    if layer is None:
        layer = [name for name in next(iter(finals.values())) if name.endswith("query")][-1]
    weights = {
        "pretrained": comparison.pretrained[layer],
        **{f"after {_label(m)}": final[layer] for m, final in finals.items()},
    }
    plt = _pyplot()
    fig = plt.figure(figsize=(4.2 * len(weights), 7.5))
    grid = fig.add_gridspec(2, len(weights), height_ratios=[1.1, 1])
    heat_axes = [fig.add_subplot(grid[0, k]) for k in range(len(weights))]
    plot_weight_heatmaps(weights, rows=rows, cols=cols, axes=heat_axes)
    plot_magnitudes(weights, ax=fig.add_subplot(grid[1, :]))
    fig.suptitle(
        f"{_short_layer(layer)} ({layer}): before and after fine-tuning "
        f"(seed{'s' * (len(seeds) > 1)} {', '.join(map(str, sorted(seeds)))})"
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Exercise 3: gradients along training


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
    fig.tight_layout()
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
