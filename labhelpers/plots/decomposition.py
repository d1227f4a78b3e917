"""Exercise 1's figure: a real weight split into one magnitude per output feature and unit-length rows."""

from __future__ import annotations

import numpy as np
import torch

from labhelpers.plots.common import COLORS, _numpy, _pyplot, lay_out
from labhelpers.seeding import forked


def plot_decomposition(W, magnitude=None, direction=None, rows: slice = slice(0, 16), cols: slice = slice(0, 24),
                       seed: int = 0):  # fmt: skip
    """Show W = m · V/||V||: a slice of W, its magnitudes m and unit rows, and every row norm beside a random matrix's.

    Top: the same rows of W, of m (one bar per output feature) and of the direction V/||V|| (each row of W divided by
    its norm). Bottom: the norm of every row of W (= m), of the direction (all 1), and, as a baseline, of a random
    matrix of W's shape whose entries have W's standard deviation: its row norms are nearly equal, so the spread of
    W's magnitudes is something pretraining learned.

    Args:
        W: (out_features, in_features) tensor or array, e.g. a pretrained query weight.
        magnitude: (out_features,) or (out_features, 1), e.g. from your decompose_weight; None computes the row norms.
        direction: (out_features, in_features), the unit rows; None computes W / m.
        rows, cols: the slice shown on top.
        seed: of the random baseline matrix (drawn on a forked random state).

    Returns:
        The Figure.
    """
    W = np.asarray(_numpy(W), dtype=np.float64)
    m = np.linalg.norm(W, axis=1) if magnitude is None else np.asarray(_numpy(magnitude), dtype=np.float64).ravel()
    V = W / m[:, None] if direction is None else np.asarray(_numpy(direction), dtype=np.float64)
    with forked(seed):
        random = torch.randn(W.shape, dtype=torch.float64).numpy() * W.std()
    plt = _pyplot()
    fig = plt.figure(figsize=(12.5, 7.5))
    grid = fig.add_gridspec(2, 3, width_ratios=[3, 1, 3], height_ratios=[1.15, 1])
    _draw_slices(fig, grid, W, m, V, rows, cols)
    ax = fig.add_subplot(grid[1, :])
    shown = np.arange(W.shape[0])[rows]
    ax.axvspan(shown[0] - 0.5, shown[-1] + 0.5, color="0.9", label="rows shown above")
    _draw_row_norms(ax, m, np.linalg.norm(V, axis=1), np.linalg.norm(random, axis=1))
    out_features, in_features = W.shape
    fig.suptitle(
        f"W ({out_features}×{in_features}) = m · V/‖V‖: one magnitude per output feature (row), times a unit-length row"
    )
    lay_out(fig)
    return fig


def _draw_slices(fig, grid, W, m, V, rows: slice, cols: slice) -> None:
    """Top row: heatmaps of W and of V/||V|| on the same rows, and m as horizontal bars between them."""
    index = np.arange(W.shape[0])[rows]
    first_col = cols.start or 0
    for k, (array, title) in enumerate(((W, "W (slice)"), (V, "V/‖V‖ (slice): each row of W over its norm"))):
        ax = fig.add_subplot(grid[0, 2 * k])
        part = array[rows, cols]
        limit = float(np.abs(part).max()) or 1.0
        image = ax.imshow(part, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                          extent=(first_col - 0.5, first_col + part.shape[1] - 0.5, index[-1] + 0.5, index[0] - 0.5))  # fmt: skip
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("input feature")
        ax.set_ylabel("output feature (row)")
    ax = fig.add_subplot(grid[0, 1])
    ax.barh(index, m[rows], color=COLORS["dora"], height=0.8)
    ax.set_ylim(index[-1] + 0.5, index[0] - 0.5)  # row 0 on top, as in the heatmaps
    ax.set_xlim(0, None)
    ax.set_title("m = ‖W_i‖", fontsize=10)
    ax.set_xlabel("magnitude")
    ax.set_yticks([])


def _draw_row_norms(ax, m, direction_norms, random_norms) -> None:
    """Bottom: the norm of every row of W (= m), of the direction (1) and of the random baseline."""
    features = np.arange(m.size)
    ax.plot(features, m, color=COLORS["dora"], linewidth=1, marker="o", markersize=2.5,
            label=f"‖W_i‖ = m_i (min {m.min():.2f}, median {np.median(m):.2f}, max {m.max():.2f})")  # fmt: skip
    ax.plot(features, random_norms, color=COLORS["pretrained"], linewidth=1,
            label=f"random matrix, same shape and entry std (min {random_norms.min():.2f}, "
                  f"max {random_norms.max():.2f})")  # fmt: skip
    ax.plot(features, direction_norms, color="black", linestyle="--", linewidth=1,
            label=f"unit rows V_i/‖V_i‖ (norm {np.median(direction_norms):.0f})")  # fmt: skip
    ax.set_xlim(-0.5, m.size - 0.5)
    ax.set_ylim(0, None)
    ax.set_xlabel("output feature (row)")
    ax.set_ylabel("row norm")
    ax.set_title("The norm of every row, beside a random matrix of the same shape and entry std")
    ax.legend(fontsize=8, loc="upper right")
