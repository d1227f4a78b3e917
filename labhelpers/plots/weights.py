"""Exercise 5's weights themselves: slices of a weight before and after fine-tuning, and its row norms."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from labhelpers.plots.common import _axes, _axes_row, _color_of, _label, _numpy, _pyplot, _short_layer, lay_out


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
    lay_out(fig)
    return fig
