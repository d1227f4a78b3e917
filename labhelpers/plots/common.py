"""What every figure shares: the methods' colours and names, new or given axes, saving a figure as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labhelpers.training import LABELS as METHOD_LABELS
from labhelpers.training import YOUR_LAYER

COLORS = {
    "full": "tab:green",
    "lora": "tab:blue",
    "dora": "tab:orange",
    YOUR_LAYER: "tab:red",
    "pretrained": "tab:gray",
}
LABELS = {**METHOD_LABELS, "pretrained": "pretrained"}
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
    return next((COLORS.get(m) for m, label in LABELS.items() if name == label or name.endswith(" " + label)), None)


def _short_layer(name: str) -> str:
    """'bert.encoder.layer.3.attention.self.value' -> 'L3 value'."""
    parts = name.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return f"L{parts[i + 1]} {parts[-1]}"
    return parts[-1]


def figures_drawn() -> bool:
    """Tell whether figures are laid out and saved (LabConfig.figures; LAB_FIGURES=0 turns it off for grading)."""
    from labhelpers.config import get_config

    return get_config().figures


def lay_out(fig, **options) -> None:
    """fig.tight_layout(**options), skipped when figures are not drawn (it draws every text to measure it)."""
    if figures_drawn():
        fig.tight_layout(**options)


def save_figure(fig, name: str, output_dir: str | os.PathLike) -> Path | None:
    """Write a figure as PNG.

    Args:
        fig: a matplotlib Figure (or an Axes, whose figure is saved).
        name: file name without extension, e.g. "ex4_comparison".
        output_dir: the folder (created if missing), e.g. LabConfig.output_dir.

    Returns:
        The path of the PNG; None when figures are not drawn (LAB_FIGURES=0: nothing is written).
    """
    if not figures_drawn():
        return None
    fig = getattr(fig, "figure", fig)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
