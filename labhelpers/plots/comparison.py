"""Exercise 4's figures: training loss along training and validation accuracy, per method and seed."""

from __future__ import annotations

import numpy as np

from labhelpers.plots.common import COLORS, _axes, _label, _pyplot, lay_out


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
    lay_out(fig)
    return fig
