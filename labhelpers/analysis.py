"""Figure 2 of the paper: (ΔM, ΔD) of every adapted weight along training, their correlations, and what they say.

Results travel as typed records: `DecompositionPoint` (one weight of one run at one checkpoint), `Correlations`
and `Trajectory` (every point of a comparison and the statistics drawn from them, written to ex5_figure2.json).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from labhelpers.stats import correlation, slope, spearman, t_interval, within_group_correlation
from labhelpers.weights import DEFAULT_TARGETS, layer_and_target, magnitude_direction_change

FIGURE2_FILE = "ex5_figure2.json"

PAPER_FIGURE2 = {
    "source": "Liu et al., DoRA, ICML 2024 (arXiv 2402.09353), Figure 2: query matrices of VL-BART on four image-text "
    "tasks, every layer, three intermediate checkpoints and the final one",
    "correlation": {"full": -0.62, "lora": 0.83, "dora": -0.31},
}
"""The ΔD–ΔM correlations the paper reports in Figure 2 (Figure 7 shows the value matrices)."""


@dataclass(frozen=True)
class DecompositionPoint:
    """One point of Figure 2: one weight matrix of one run at one checkpoint, against the pretrained weight.

    Attributes:
        method, seed: the run.
        target: the projection ("query" or "value").
        layer: the encoder layer (0-based).
        checkpoint: 1 … number of checkpoints (evenly spaced over training; the last is the final weight).
        step: optimiser steps at that checkpoint.
        delta_m, delta_d: ΔM and ΔD (paper §3.2) of that weight.
    """

    method: str
    seed: int
    target: str
    layer: int
    checkpoint: int
    step: int
    delta_m: float
    delta_d: float


@dataclass(frozen=True)
class Correlations:
    """How ΔM goes with ΔD over a set of Figure 2 points.

    Attributes:
        pearson: Pearson's r of (ΔD, ΔM) over all points (layers × checkpoints).
        spearman: Spearman's rank correlation of the same points.
        slope: least-squares slope of ΔM on ΔD.
        within_checkpoint: Pearson's r after subtracting each checkpoint's mean ΔD and ΔM (the trend along
            training removed: only the differences between layers at one time remain).
    """

    pearson: float
    spearman: float
    slope: float
    within_checkpoint: float

    @classmethod
    def of(cls, points: list[DecompositionPoint]) -> Correlations:
        d = [p.delta_d for p in points]
        m = [p.delta_m for p in points]
        return cls(
            correlation(d, m),
            spearman(d, m),
            slope(d, m),
            within_group_correlation(d, m, [p.checkpoint for p in points]),
        )


STATISTICS = ("pearson", "spearman", "slope", "within_checkpoint")


@dataclass
class Trajectory:
    """Every Figure 2 point of a comparison, measured with one measure, and the statistics drawn from them.

    Attributes:
        points: one per method, seed, checkpoint and adapted weight matrix.
        paper: the paper's reported correlations (PAPER_FIGURE2).
        path: where ex5_figure2.json was written, or None.
    """

    points: list[DecompositionPoint]
    paper: dict = field(default_factory=lambda: copy.deepcopy(PAPER_FIGURE2))
    path: Path | None = None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(p.method for p in self.points))

    @property
    def targets(self) -> list[str]:
        """The projections measured, the paper's headline (query) first."""
        found = list(dict.fromkeys(p.target for p in self.points))
        return sorted(
            found, key=lambda t: (DEFAULT_TARGETS.index(t) if t in DEFAULT_TARGETS else len(DEFAULT_TARGETS), t)
        )

    def seeds(self, method: str) -> list[int]:
        return sorted({p.seed for p in self.points if p.method == method})

    def select(self, method: str | None = None, target: str | None = None, seed: int | None = None):
        """Return the points of one method / target / seed (None: any)."""
        return [
            p
            for p in self.points
            if (method is None or p.method == method)
            and (target is None or p.target == target)
            and (seed is None or p.seed == seed)
        ]

    def per_seed(self, method: str, target: str) -> dict[int, Correlations]:
        """Return {seed: Correlations over that seed's points (layers × checkpoints)} of one method and target."""
        return {seed: Correlations.of(self.select(method, target, seed)) for seed in self.seeds(method)}

    def spread(self, method: str, target: str, statistic: str) -> tuple[float, float, int]:
        """Return (mean, sample std, number of seeds) of one statistic over seeds (std nan for one seed)."""
        values = np.asarray([getattr(c, statistic) for c in self.per_seed(method, target).values()], dtype=float)
        std = float(values.std(ddof=1)) if values.size > 1 else math.nan
        return float(values.mean()), std, int(values.size)

    def summary(self) -> dict:
        """Return {method: {target: {statistic: {"mean", "std", "seeds"}, "per_seed": [{"seed", statistic…}]}}}."""
        summary = {}
        for method in self.methods:
            summary[method] = {}
            for target in self.targets:
                if not self.select(method, target):
                    continue
                entry = {}
                for statistic in STATISTICS:
                    mean, std, n = self.spread(method, target, statistic)
                    entry[statistic] = {"mean": mean, "std": std, "seeds": n}
                entry["per_seed"] = [{"seed": seed, **asdict(c)} for seed, c in self.per_seed(method, target).items()]
                summary[method][target] = entry
        return summary

    def to_json(self) -> dict:
        """Return what ex5_figure2.json holds (nan written as null)."""
        return _finite({"paper": self.paper, "points": [asdict(p) for p in self.points], "summary": self.summary()})

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Write ex5_figure2.json into `output_dir` (created if missing); return its path."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FIGURE2_FILE
        self.path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return self.path

    def table(self, labels: Mapping[str, str] | None = None) -> str:
        """Return the statistics as text: per method and target, mean ± std over seeds and the paper's value."""
        labels = labels or {}
        paper = self.paper.get("correlation", {})
        lines = [
            f"{'target':<7}{'method':<9}{'seeds':>6}  {'Pearson':>14}  {'Spearman':>14}  {'slope':>14}  "
            f"{'within ckpt':>14}  {'paper (query)':>13}"
        ]
        for target in self.targets:
            for method in self.methods:
                if not self.select(method, target):
                    continue
                cells = []
                for statistic in STATISTICS:
                    mean, std, n = self.spread(method, target, statistic)
                    cells.append(f"{mean:+6.2f} ± {std:4.2f}" if n > 1 else f"{mean:+6.2f}       ")
                reference = f"{paper[method]:+.2f}" if method in paper and target == "query" else ""
                lines.append(
                    f"{target:<7}{labels.get(method, method):<9}{len(self.seeds(method)):>6}  "
                    + "  ".join(f"{c:>14}" for c in cells)
                    + f"  {reference:>13}"
                )
        lines.append("(mean ± sample std over seeds; each seed's statistic is over its layers × checkpoints)")
        return "\n".join(lines)


def _finite(value):
    """Replace nan/inf by None, recursively, so that the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def decomposition_trajectory(
    comparison,
    measure: Callable[[torch.Tensor, torch.Tensor], tuple[float, float]] = magnitude_direction_change,
) -> Trajectory:
    """Measure (ΔM, ΔD) of every adapted weight of every run at every checkpoint (the paper's Figure 2 points).

    Args:
        comparison: a training.Comparison from run_comparison in this session (keep_weights=True), holding the
            pretrained weights and each checkpoint's merged weights.
        measure: `measure(W0, W) -> (delta_m, delta_d)`, e.g. your `magnitude_direction_change`.

    Returns:
        A Trajectory with one point per (method, seed, checkpoint, layer); the pretrained weights themselves
        (ΔM = ΔD = 0) are not a point.
    """
    pretrained = getattr(comparison, "pretrained", None)
    runs = getattr(comparison, "runs", None)
    if not pretrained or not runs or not all(c.weights for run in runs for c in run.checkpoints):
        raise ValueError(
            "these results hold no checkpoint weights: run training.run_comparison (with keep_weights=True) in this "
            "session; the weights are kept in memory, not in ex4_results.json"
        )
    points = []
    for run in runs:
        for k, checkpoint in enumerate(run.checkpoints, start=1):
            for name, W in checkpoint.weights.items():
                layer, target = layer_and_target(name)
                delta_m, delta_d = measure(pretrained[name], W)
                points.append(
                    DecompositionPoint(
                        run.method, run.seed, target, layer, k, checkpoint.step, float(delta_m), float(delta_d)
                    )
                )
    return Trajectory(points)


def _sign_verdict(values: list[float], paper: float) -> str:
    signs = {math.copysign(1, v) for v in values if not math.isnan(v)}
    if signs == {math.copysign(1, paper)}:
        return "the paper's sign" + (" in every seed" if len(values) > 1 else "")
    if signs == {-math.copysign(1, paper)}:
        return "this does not reproduce the paper's sign" + (" (no seed does)" if len(values) > 1 else "")
    return "the sign differs between seeds: this does not reproduce the paper's sign consistently"


def _closer_line(trajectory: Trajectory, target: str) -> str:
    """Say whether DoRA's Pearson r is closer to full fine-tuning's than LoRA's is, seed by seed (paired).

    When full fine-tuning ran with fewer seeds than the adapters, a seed it did not run is compared with the mean of
    the full fine-tuning runs there are, and the line says so: the spread is then the adapters' only.
    """
    full, lora, dora = (trajectory.per_seed(m, target) for m in ("full", "lora", "dora"))
    full_mean = float(np.mean([c.pearson for c in full.values()]))
    seeds = sorted(lora.keys() & dora.keys())
    reference = {s: full[s].pearson if s in full else full_mean for s in seeds}
    gaps = np.asarray(
        [abs(lora[s].pearson - reference[s]) - abs(dora[s].pearson - reference[s]) for s in seeds], dtype=float
    )
    borrowed = [s for s in seeds if s not in full]
    note = ""
    if borrowed:
        note = (
            f"; full FT ran seed{'s' * (len(full) > 1)} {', '.join(map(str, sorted(full)))} only: its mean r is used"
        )
        note += f" for seed{'s' * (len(borrowed) > 1)} {', '.join(map(str, borrowed))}"
    head = (
        f"- Is DoRA's correlation closer to full fine-tuning's than LoRA's is? |LoRA − full| − |DoRA − full| = "
        f"{', '.join(f'{g:+.2f}' for g in gaps)} (seed by seed{note})"
    )
    if gaps.size < 2:
        return head + "; one seed: no spread, so no verdict at this scale."
    mean, _, (low, high) = t_interval(gaps)
    verdict = (
        "yes, at this scale"
        if low > 0
        else "no: LoRA's is closer, at this scale"
        if high < 0
        else "these seeds cannot tell"
    )
    return f"{head}; mean {mean:+.2f}, 95 % interval [{low:+.2f}, {high:+.2f}]: {verdict}."


def figure2_findings(trajectory: Trajectory, labels: Mapping[str, str] | None = None) -> list[str]:
    """Say what Figure 2 measured, target by target: correlations with their spread, against the paper's.

    Args:
        trajectory: from decomposition_trajectory.
        labels: display names of the methods.

    Returns:
        Lines of text built from the measured numbers only.
    """
    labels = labels or {}
    paper = trajectory.paper.get("correlation", {})
    lines = []
    for target in trajectory.targets:
        figure = "Figure 2" if target == "query" else "Figure 7"
        lines.append(f"ΔD–ΔM on the {target} matrices (the paper's {figure}); mean ± std over seeds:")
        means = {}
        for method in trajectory.methods:
            if not trajectory.select(method, target):
                continue
            per_seed = trajectory.per_seed(method, target)
            pearson = [c.pearson for c in per_seed.values()]
            mean, std, n = trajectory.spread(method, target, "pearson")
            within, within_std, _ = trajectory.spread(method, target, "within_checkpoint")
            means[method] = mean
            spread = f" ± {std:.2f}" if n > 1 else ""
            within_spread = f" ± {within_std:.2f}" if n > 1 else ""
            seeds = (
                f" over {n} seeds (per seed {', '.join(f'{v:+.2f}' for v in pearson)})"
                if n > 1
                else f" (seed {next(iter(per_seed))} only)"
            )
            line = (
                f"- {labels.get(method, method)}: Pearson {mean:+.2f}{spread}{seeds}; within a checkpoint "
                f"{within:+.2f}{within_spread}"
            )
            if method in paper and target == "query":
                line += f"; paper {paper[method]:+.2f}: {_sign_verdict(pearson, paper[method])}"
            lines.append(line + ".")
        if {"full", "lora", "dora"} <= means.keys():
            lines.append(_closer_line(trajectory, target))
    return lines
