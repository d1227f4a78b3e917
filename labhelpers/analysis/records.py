"""Figure 2's records: its points, the null baseline's points, the per-row changes, and the Trajectory that holds them.

A `Trajectory` computes every statistic from the records it holds and writes them all to ex5_figure2.json (its
layout is in labhelpers.analysis's docstring); `Trajectory.from_json` reads the file back.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from labhelpers.analysis.findings import figure2_table
from labhelpers.stats import correlation, slope, spearman, within_group_correlation
from labhelpers.weights import DEFAULT_TARGETS

FIGURE2_FILE = "ex5_figure2.json"

PAPER_FIGURE2 = {
    "source": "Liu et al., DoRA, ICML 2024 (arXiv 2402.09353), Figure 2: query matrices of VL-BART on four image-text "
    "tasks, every layer, three intermediate checkpoints and the final one",
    "correlation": {"full": -0.62, "lora": 0.83, "dora": -0.31},
}
"""The ΔD–ΔM correlations the paper reports in Figure 2 (Figure 7 shows the value matrices)."""

ROW_DIGITS = 6
"""Significant digits of the per-row values kept (and saved): the per-row statistic is computed from these."""


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
class RowChanges:
    """Per output feature (row), how one weight matrix of one run changed: the data of the per-row test.

    Attributes:
        method, seed, target, layer, checkpoint: which matrix, when (the final checkpoint).
        one_minus_cos: (out_features,) 1 − cos(W_i, W0_i), to ROW_DIGITS significant digits.
        excess: (out_features,) e_i = ||W_i|| − ||W0_i|| / cos_i (weights.row_changes), to ROW_DIGITS digits.
    """

    method: str
    seed: int
    target: str
    layer: int
    checkpoint: int
    one_minus_cos: tuple[float, ...]
    excess: tuple[float, ...]

    def __post_init__(self):
        for name in ("one_minus_cos", "excess"):
            values = (math.nan if v is None else float(f"{v:.{ROW_DIGITS}g}") for v in getattr(self, name))
            object.__setattr__(self, name, tuple(values))

    @cached_property
    def spearman(self) -> float:
        """Spearman's rank correlation over rows of (1 − cos_i, e_i)."""
        return spearman(self.one_minus_cos, self.excess)


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


def _spread(values) -> tuple[float, float, int]:
    """Return (mean, sample std, count) of some numbers (std nan for one)."""
    values = np.asarray(list(values), dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), std, int(values.size)


def _entry(mean_std_n: tuple[float, float, int]) -> dict:
    mean, std, n = mean_std_n
    return {"mean": mean, "std": std, "seeds": n}


@dataclass
class Trajectory:
    """Every Figure 2 point of a comparison, its null baseline and per-row changes, and the statistics drawn from them.

    Attributes:
        points: one per method, seed, checkpoint and adapted weight matrix.
        baseline: the null baseline, one point per point of `points` (same method, seed, target, layer, checkpoint
            and ΔD): ΔM of W0 plus a random update of the method's kind scaled to that ΔD (see
            labhelpers.analysis.measure). Empty when none was drawn.
        rows: per-row changes of every matrix at the final checkpoint; empty when none were measured.
        null_ranks: {method: rank of its null updates, None for dense}.
        null_seed: the seed the null updates were drawn from.
        paper: the paper's reported correlations (PAPER_FIGURE2).
        path: where ex5_figure2.json was written, or None.
    """

    points: list[DecompositionPoint]
    baseline: list[DecompositionPoint] = field(default_factory=list)
    rows: list[RowChanges] = field(default_factory=list)
    null_ranks: dict[str, int | None] = field(default_factory=dict)
    null_seed: int = 0
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

    def select(self, method: str | None = None, target: str | None = None, seed: int | None = None, *,
               baseline: bool = False) -> list[DecompositionPoint]:  # fmt: skip
        """Return the points (or with baseline=True the null points) of one method / target / seed (None: any)."""
        return [
            p
            for p in (self.baseline if baseline else self.points)
            if (method is None or p.method == method)
            and (target is None or p.target == target)
            and (seed is None or p.seed == seed)
        ]

    def per_seed(self, method: str, target: str, *, baseline: bool = False) -> dict[int, Correlations]:
        """Return {seed: Correlations over that seed's points (layers × checkpoints)} of one method and target."""
        return {
            seed: Correlations.of(own)
            for seed in self.seeds(method)
            if (own := self.select(method, target, seed, baseline=baseline))
        }

    def spread(self, method: str, target: str, statistic: str, *, baseline: bool = False) -> tuple[float, float, int]:
        """Return (mean, sample std, number of seeds) of one statistic over seeds (std nan for one seed)."""
        return _spread(getattr(c, statistic) for c in self.per_seed(method, target, baseline=baseline).values())

    def has_baseline(self, method: str, target: str) -> bool:
        return bool(self.select(method, target, baseline=True))

    def null_kind(self, method: str) -> str:
        """Name the null update of a method: 'rank-8' or 'dense'."""
        rank = self.null_ranks.get(method)
        return "dense" if rank is None else f"rank-{rank}"

    def row_spearman(self, method: str, target: str) -> dict[int, dict[int, float]]:
        """Return {seed: {layer: Spearman over rows of (1 − cos_i, e_i)}} at the final checkpoint."""
        found: dict[int, dict[int, float]] = {}
        for rows in self.rows:
            if rows.method == method and rows.target == target:
                found.setdefault(rows.seed, {})[rows.layer] = rows.spearman
        return {seed: dict(sorted(layers.items())) for seed, layers in sorted(found.items())}

    def row_spread(self, method: str, target: str) -> tuple[float, float, int]:
        """Return (mean, sample std, number of seeds) over seeds of each seed's mean per-row Spearman over layers."""
        return _spread(float(np.mean(list(layers.values()))) for layers in self.row_spearman(method, target).values())

    def summary(self) -> dict:
        """Return the summary of ex5_figure2.json: {method: {target: ...}} (layout in labhelpers.analysis)."""
        summary: dict = {}
        for method in self.methods:
            for target in self.targets:
                if self.select(method, target):
                    summary.setdefault(method, {})[target] = self._summary_entry(method, target)
        return summary

    def _summary_entry(self, method: str, target: str) -> dict:
        entry = {s: _entry(self.spread(method, target, s)) for s in STATISTICS}
        entry["per_seed"] = [{"seed": seed, **asdict(c)} for seed, c in self.per_seed(method, target).items()]
        if self.has_baseline(method, target):
            null = {"rank": self.null_ranks.get(method), "seed": self.null_seed}
            null.update({s: _entry(self.spread(method, target, s, baseline=True)) for s in STATISTICS})
            per_seed = self.per_seed(method, target, baseline=True)
            null["per_seed"] = [{"seed": seed, **asdict(c)} for seed, c in per_seed.items()]
            entry["baseline"] = null
        per_row = self.row_spearman(method, target)
        if per_row:
            layers = [{"seed": s, "spearman": float(np.mean(list(v.values()))),
                       "layers": [{"layer": k, "spearman": rho} for k, rho in v.items()]} for s, v in per_row.items()]  # fmt: skip
            checkpoint = max(r.checkpoint for r in self.rows if r.method == method and r.target == target)
            entry["per_row"] = {"checkpoint": checkpoint, "spearman": _entry(self.row_spread(method, target)),
                                "per_seed": layers}  # fmt: skip
        return entry

    def to_json(self) -> dict:
        """Return what ex5_figure2.json holds (nan written as null)."""
        return _finite({
            "paper": self.paper, "points": [asdict(p) for p in self.points],
            "baseline_points": [asdict(p) for p in self.baseline], "row_changes": [asdict(r) for r in self.rows],
            "summary": self.summary(),
        })  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> Trajectory:
        """Rebuild a trajectory from a loaded ex5_figure2.json (its summary is recomputed from the records)."""
        ranks, seed = {}, 0
        for method, targets in data.get("summary", {}).items():
            for entry in targets.values():
                if "baseline" in entry:
                    ranks[method], seed = entry["baseline"]["rank"], entry["baseline"]["seed"]
        return cls(
            points=[DecompositionPoint(**p) for p in data["points"]],
            baseline=[DecompositionPoint(**p) for p in data.get("baseline_points", [])],
            rows=[RowChanges(**r) for r in data.get("row_changes", [])], null_ranks=ranks, null_seed=seed,
            paper=data.get("paper", copy.deepcopy(PAPER_FIGURE2)),
        )  # fmt: skip

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Write ex5_figure2.json into `output_dir` (created if missing); return its path."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FIGURE2_FILE
        text = json.dumps(self.to_json(), indent=1)
        # Lists of plain numbers on one line each: the per-row values would otherwise take a line per number.
        text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text)
        self.path.write_text(text + "\n")
        return self.path

    def table(self, labels: Mapping[str, str] | None = None) -> str:
        """Return the statistics as text: per method and target, trained and null, mean ± std over seeds."""
        return figure2_table(self, labels)


def _finite(value):
    """Replace nan/inf by None, recursively, so that the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
