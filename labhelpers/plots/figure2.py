"""Exercise 5's Figure 2: ΔD against ΔM of every adapted weight along training, beside its null baseline in grey."""

from __future__ import annotations

import math

import numpy as np

from labhelpers.analysis import spread_text
from labhelpers.plots.common import CHECKPOINT_MARKERS, _axes_row, _label, _pyplot, lay_out
from labhelpers.stats import slope

NULL_COLOR = "0.62"
"""The null baseline's grey (matplotlib's grey level: 0 black, 1 white)."""


def plot_figure2(trajectory, method: str, axes=None, log: bool = True):
    """Draw the paper's Figure 2 for one method: ΔD (x) against ΔM (y), one panel per target (query, then value).

    One point per seed, layer and checkpoint: colour = layer, marker = checkpoint; one least-squares line per seed.
    In grey beneath them, the null baseline: for each point, W0 plus a random update of the method's kind with the
    same ΔD (nothing learned), with its own least-squares line per seed; a thin grey stroke joins each point to its
    null point, so the gap between them is what training did beyond the row-norm geometry. Each panel's title gives
    Pearson's r, the within-checkpoint r and the slope, trained and null (mean ± std over seeds), and, for query, the
    paper's correlation.

    Args:
        trajectory: an analysis.Trajectory.
        method: "full", "lora" or "dora".
        axes: one Axes per target; None makes a new figure.
        log: logarithmic axes (ΔD spans two orders of magnitude along training); the lines are still the
            least-squares fits of ΔM on ΔD, drawn as curves.

    Returns:
        The Figure.
    """
    targets = [t for t in trajectory.targets if trajectory.select(method, t)]
    if not targets:
        raise ValueError(f"the trajectory has no points of method {method!r}; it has {trajectory.methods}")
    fig, axes = _axes_row(axes, len(targets), (5.8, 4.8), what="target")
    checkpoints = sorted({p.checkpoint for p in trajectory.select(method)})
    layers = sorted({p.layer for p in trajectory.select(method)})
    cmap = _pyplot().get_cmap("viridis")
    colour = {layer: cmap(k / max(1, len(layers) - 1)) for k, layer in enumerate(layers)}
    for ax, target in zip(axes, targets):
        points = trajectory.select(method, target)
        _draw_null(ax, points, trajectory.select(method, target, baseline=True))
        for point in points:
            ax.scatter(point.delta_d, point.delta_m, color=colour[point.layer], s=30, alpha=0.9, zorder=3,
                       marker=CHECKPOINT_MARKERS[(point.checkpoint - 1) % len(CHECKPOINT_MARKERS)],
                       edgecolors="black", linewidths=0.4)  # fmt: skip
        for seed in trajectory.seeds(method):
            _draw_fit(ax, trajectory.select(method, target, seed), color="black", linestyle="-", log=log)
            _draw_fit(ax, trajectory.select(method, target, seed, baseline=True), NULL_COLOR, "--", log)
        _scales(ax, log)
        ax.set_title(_panel_title(trajectory, method, target), fontsize=9)
        ax.set_xlabel("ΔD (mean 1 − cos per output feature)")
        ax.set_ylabel("ΔM (mean |change of row norm|)")
    handles = _legend_handles(trajectory, method, colour, checkpoints)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(f"{_label(method)}: magnitude vs direction change of the adapted weights, along training")
    rows_of_legend = -(-len(handles) // 6)
    lay_out(fig, rect=(0, 0.035 * rows_of_legend + 0.01, 1, 1))
    return fig


def _draw_null(ax, points, null) -> None:
    """Draw the null points in grey, each joined to its trained point (same ΔD) by a thin stroke."""
    if not null:
        return
    from matplotlib.collections import LineCollection

    key = {(p.seed, p.layer, p.checkpoint): p for p in null}
    pairs = [(p, key[(p.seed, p.layer, p.checkpoint)]) for p in points if (p.seed, p.layer, p.checkpoint) in key]
    strokes = [[(p.delta_d, p.delta_m), (q.delta_d, q.delta_m)] for p, q in pairs]
    ax.add_collection(LineCollection(strokes, colors=NULL_COLOR, linewidths=0.6, alpha=0.6, zorder=1))
    for p in null:
        ax.scatter(p.delta_d, p.delta_m, color=NULL_COLOR, s=22, alpha=0.8, zorder=2, edgecolors="none",
                   marker=CHECKPOINT_MARKERS[(p.checkpoint - 1) % len(CHECKPOINT_MARKERS)])  # fmt: skip


def _draw_fit(ax, points, color: str, linestyle: str, log: bool) -> None:
    """Draw the least-squares line of ΔM on ΔD over some points, across their ΔD range."""
    if len(points) < 2:
        return
    x = np.asarray([p.delta_d for p in points])
    y = np.asarray([p.delta_m for p in points])
    b = slope(x, y)
    a = y.mean() - b * x.mean()
    line_x = np.geomspace(x.min(), x.max(), 50) if log and x.min() > 0 else np.linspace(x.min(), x.max(), 2)
    line_y = a + b * line_x
    keep = line_y > 0 if log else np.ones_like(line_y, dtype=bool)  # a log axis cannot show the fit below 0
    ax.plot(line_x[keep], line_y[keep], color=color, linestyle=linestyle, linewidth=1, alpha=0.8, zorder=2.5)


def _panel_title(trajectory, method: str, target: str) -> str:
    """Pearson's r, within-checkpoint r and slope, each with the null's beside it; on query, the paper's r."""
    paper = trajectory.paper.get("correlation", {})
    n = len(trajectory.per_seed(method, target))
    pearson, within, trained_slope = (
        spread_text(*trajectory.spread(method, target, s), s) for s in ("pearson", "within_checkpoint", "slope")
    )
    null = dict.fromkeys(("pearson", "within_checkpoint", "slope"), "")
    if trajectory.has_baseline(method, target):
        null = {s: f" (null {spread_text(*trajectory.spread(method, target, s, baseline=True), s)})" for s in null}
    reference = f"; paper {paper[method]:+.2f}" if target == "query" and method in paper else ""
    return (
        f"{target} (paper Fig. {2 if target == 'query' else 7}): r = {pearson}{null['pearson']}{reference}\n"
        f"within a checkpoint r = {within}{null['within_checkpoint']}\n"
        f"slope {trained_slope}{null['slope']}; {n} seed{'s' * (n > 1)}"
    )


def _scales(ax, log: bool) -> None:
    """Logarithmic axes labelled at 1, 2 and 5 times each power of 10 (a tenfold range then has three labels)."""
    if not log:
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
        return
    from matplotlib import ticker

    for axis, set_scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        set_scale("log")
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(_power_of_ten))
        axis.set_minor_formatter(ticker.NullFormatter())


def _power_of_ten(value: float, _position=None) -> str:
    """Write 0.0002 as 2×10⁻⁴ (mathtext), 0.001 as 10⁻³."""
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10**exponent, 6)
    return f"$10^{{{exponent}}}$" if mantissa == 1 else f"${mantissa:g}\\times10^{{{exponent}}}$"


def _legend_handles(trajectory, method: str, colour: dict, checkpoints: list[int]) -> list:
    """The legend shared by both panels: layers, checkpoints, the fits and, when drawn, the null baseline."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, marker="o", linestyle="", label=f"layer {layer}") for layer, c in colour.items()
    ]
    total = len(checkpoints)
    handles += [
        Line2D([], [], color="0.3", marker=CHECKPOINT_MARKERS[(k - 1) % len(CHECKPOINT_MARKERS)], linestyle="",
               label=f"{100 * k / total:.0f} % of training")
        for k in checkpoints
    ]  # fmt: skip
    handles.append(Line2D([], [], color="black", alpha=0.8, label="least squares (per seed)"))
    if trajectory.select(method, baseline=True):
        handles.append(Line2D([], [], color=NULL_COLOR, marker="o", linestyle="--",
                              label=f"null: W0 + random {trajectory.null_kind(method)} update of the same ΔD"))  # fmt: skip
    return handles
