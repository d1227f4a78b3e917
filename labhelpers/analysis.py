"""How fine-tuning changes the weights: merged weights, the paper's (ΔM, ΔD) and Figure 2, gradient statistics.

Results travel as typed records: `DecompositionPoint` and `Trajectory` (Figure 2), `GradientStats` (Exercise 3).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from labhelpers.config import get_config
from labhelpers.errors import LabConfigError

DEFAULT_TARGETS = ("query", "value")
"""The adapted projections of the lab's comparison (module names end with these)."""

FIGURE2_FILE = "ex5_figure2.json"

PAPER_FIGURE2 = {
    "source": "Liu et al., DoRA, ICML 2024 (arXiv 2402.09353), Figure 2: query matrices of VL-BART on four image-text "
    "tasks, every layer, three intermediate checkpoints and the final one",
    "correlation": {"full": -0.62, "lora": 0.83, "dora": -0.31},
}
"""The ΔD–ΔM correlations the paper reports in Figure 2 (Figure 7 shows the value matrices)."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the torch device to train on, after checking that this machine has it.

    Args:
        device: "cpu", "cuda", "cuda:N" or a torch.device; None = LabConfig.device (`LAB_DEVICE`; default "cuda"
            when PyTorch sees a GPU, else "cpu").

    Returns:
        A torch.device. Raises LabConfigError saying what to set when the device cannot train a model here.
    """
    asked = get_config().device if device is None else device
    try:
        resolved = torch.device(asked)
    except (RuntimeError, TypeError):
        raise LabConfigError(
            f"device={asked!r} is not a torch device: use cpu, cuda or cuda:N (LAB_DEVICE)."
        ) from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LabConfigError(
                f"device {str(resolved)!r} was asked for (LAB_DEVICE or device=), but PyTorch sees no GPU here "
                "(torch.cuda.is_available() is False): set LAB_DEVICE=cpu, or unset LAB_DEVICE to use a GPU only "
                "when there is one."
            )
        if resolved.index is not None and resolved.index >= count:
            raise LabConfigError(
                f"device {str(resolved)!r} was asked for, but PyTorch sees {count} GPU(s): use cuda:0 … cuda:{count - 1}."
            )
        return resolved
    raise LabConfigError(
        f"device {str(resolved)!r} cannot train the lab's model: a 'meta' tensor holds no data, and only cpu and "
        "cuda are supported here. Use cpu, cuda or cuda:N (LAB_DEVICE)."
    )


GRADIENT_LAYER = "bert.encoder.layer.0.intermediate.dense"
"""The pretrained layer of the gradient study: MiniLM's first feed-forward projection, (1536, 384), non-square."""


def magnitude_direction_change(W0: torch.Tensor, W: torch.Tensor) -> tuple[float, float]:
    """Measure how much a fine-tuned weight changed in magnitude and in direction (paper §3.2).

    One magnitude and one direction per output feature, i.e. per row of nn.Linear's (out, in) weight. The paper's
    notation (W in R^{d×k}, a norm "across each column") leaves the axis open; the per-output-feature convention is
    the authors' (their clarification in nbasyl/DoRA#1, and NVlabs/DoRA's code, which takes the norm over dim=1),
    and PEFT's.

    Args:
        W0: (out_features, in_features), the pretrained weight.
        W: (out_features, in_features), the fine-tuned weight.

    Returns:
        (delta_m, delta_d): ΔM = mean_i | ||W_i|| - ||W0_i|| |, ΔD = mean_i (1 - cos(W_i, W0_i)), as floats.
    """
    if W0.shape != W.shape or W0.dim() != 2:
        raise ValueError(
            f"W0 and W must be two (out_features, in_features) matrices of one shape, got {tuple(W0.shape)} and {tuple(W.shape)}"
        )
    # float64: for a short fine-tuning run 1 - cos is ~1e-5, close to float32's resolution of a cosine near 1.
    W0 = W0.detach().to(torch.float64)
    W = W.detach().to(torch.float64)
    norm0 = torch.linalg.vector_norm(W0, dim=1)
    norm = torch.linalg.vector_norm(W, dim=1)
    delta_m = (norm - norm0).abs().mean()
    cos = (W * W0).sum(dim=1) / (norm * norm0).clamp_min(1e-300)
    delta_d = (1 - cos).mean()
    return float(delta_m), float(delta_d)


def _short_name(name: str) -> str:
    """Drop PEFT's wrapper prefix so that names match the base model's module names."""
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _matches(name: str, targets: Iterable[str] | None) -> bool:
    return targets is None or any(name == t or name.endswith("." + t) for t in targets)


@torch.no_grad()
def merged_weights(peft_model: nn.Module, targets: Iterable[str] | None = DEFAULT_TARGETS) -> dict[str, torch.Tensor]:
    """Return the weight each adapted linear layer would have after merging its adapter, without merging it.

    Uses PEFT's own pieces, as `merge_and_unload` does: LoRA gives W0 + s·B·A (`get_delta_weight`); DoRA gives
    m / ||W0 + s·B·A|| * (W0 + s·B·A), the norm taken per row (`lora_magnitude_vector[...].get_weight_norm`).

    Args:
        peft_model: a model returned by `peft.get_peft_model` (LoRA or DoRA), not merged.
        targets: keep layers whose name ends with one of these; None keeps every adapted layer.

    Returns:
        {module name without PEFT's `base_model.model.` prefix: (out_features, in_features) float32 CPU tensor}.
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    weights = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or not hasattr(module, "get_delta_weight"):
            continue
        name = _short_name(name)
        if not _matches(name, targets):
            continue
        if module.merged:
            raise ValueError(f"{name} is already merged: call merged_weights before merge_and_unload / merge_adapter")
        base = module.get_base_layer().weight
        weight = base.detach().clone()
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            delta = module.get_delta_weight(adapter)
            if adapter in module.lora_magnitude_vector:
                # DoRA (paper Eq. 5): rescale every row of W0 + ΔW to the learned magnitude. The norm is the one
                # forward uses: of the unmerged base weight plus this adapter's update.
                magnitude = module.lora_magnitude_vector[adapter]
                norm = magnitude.get_weight_norm(base, transpose(delta, module.fan_in_fan_out), scaling=1)
                factor = transpose((magnitude.weight / norm).view(-1, 1), module.fan_in_fan_out)
                weight = factor * (weight + delta)
            else:
                weight = weight + delta
        weights[name] = weight.to("cpu", torch.float32)
    return weights


def linear_weights(model: nn.Module, targets: Iterable[str] | None = DEFAULT_TARGETS) -> dict[str, torch.Tensor]:
    """Return copies of the weights of a model's nn.Linear layers named like `targets`.

    The ΔM/ΔD reference W0 (of the pretrained model) and the trained weights of full fine-tuning.

    Args:
        model: a model not wrapped by PEFT, e.g. from `load_base_model`.
        targets: keep nn.Linear layers whose name ends with one of these.

    Returns:
        {module name: (out_features, in_features) float32 CPU tensor}, the same names as `merged_weights`.
    """
    return {
        _short_name(name): module.weight.detach().to("cpu", torch.float32).clone()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _matches(_short_name(name), targets)
    }


def _centred(xs: Iterable[float], ys: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Return xs and ys as float64 arrays minus their means (ValueError when their lengths differ)."""
    x = np.asarray(list(xs), dtype=np.float64)
    y = np.asarray(list(ys), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"xs and ys must be equally long, got {x.size} and {y.size}")
    if x.size == 0:
        return x, y
    return x - x.mean(), y - y.mean()


def correlation(xs: Iterable[float], ys: Iterable[float]) -> float:
    """Return Pearson's correlation coefficient of two equally long sequences (nan when one is constant).

    Args:
        xs: (N,) numbers.
        ys: (N,) numbers.

    Returns:
        r in [-1, 1], or nan when N < 2 or either sequence has no spread.
    """
    x, y = _centred(xs, ys)
    if x.size < 2:
        return math.nan
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan


def t_quantile_95(df: int) -> float:
    """Return the two-sided 95 % quantile of Student's t with `df` >= 1 degrees of freedom.

    A standard table up to df = 9; from df = 10 on, t(10) = 2.228, an upper bound (the quantile falls with df), so
    intervals built from it are never too narrow.
    """
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    if df < 1:
        raise ValueError(f"df={df}: a t interval needs at least 2 values (df >= 1)")
    return table.get(df, 2.228)


def spearman(xs: Iterable[float], ys: Iterable[float]) -> float:
    """Return Spearman's rank correlation: Pearson's r of the ranks (ties get their average rank).

    Args:
        xs: (N,) numbers.
        ys: (N,) numbers.

    Returns:
        rho in [-1, 1], or nan when N < 2 or either sequence is constant.
    """
    return correlation(_ranks(xs), _ranks(ys))


def _ranks(values: Iterable[float]) -> np.ndarray:
    values = np.asarray(list(values), dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(values.size, dtype=np.float64)
    for value in np.unique(values):  # ties share the mean of their ranks
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def slope(xs: Iterable[float], ys: Iterable[float]) -> float:
    """Return the least-squares slope of ys on xs (the line y = a + b x drawn through Figure 2's points).

    Args:
        xs: (N,) numbers, here ΔD.
        ys: (N,) numbers, here ΔM.

    Returns:
        b, or nan when N < 2 or xs is constant.
    """
    x, y = _centred(xs, ys)
    if x.size < 2:
        return math.nan
    denominator = float((x * x).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan


def within_group_correlation(xs: Iterable[float], ys: Iterable[float], groups: Iterable) -> float:
    """Return Pearson's r after subtracting each group's mean from xs and ys (here: each checkpoint's mean).

    Every layer's ΔD and ΔM grow along training; pooling checkpoints adds that shared trend to the correlation.
    Demeaning within a checkpoint keeps only how layers differ from each other at one point of training.

    Args:
        xs, ys: (N,) numbers.
        groups: (N,) labels, e.g. the checkpoint of each point.

    Returns:
        r in [-1, 1], or nan when nothing varies within the groups.
    """
    x = np.asarray(list(xs), dtype=np.float64)
    y = np.asarray(list(ys), dtype=np.float64)
    labels = np.asarray(list(groups))
    if not x.shape == y.shape == labels.shape:
        raise ValueError(f"xs, ys and groups must be equally long, got {x.size}, {y.size} and {labels.size}")
    for label in np.unique(labels):
        members = labels == label
        x[members] -= x[members].mean()
        y[members] -= y[members].mean()
    return correlation(x, y)


_LAYER_NAME = re.compile(r"(?:^|\.)layer\.(\d+)\.(?:.*\.)?([A-Za-z_]+)$")


def layer_and_target(name: str) -> tuple[int, str]:
    """Split a module name into its encoder layer and projection: '…layer.3.attention.self.query' -> (3, 'query')."""
    match = _LAYER_NAME.search(name)
    if match is None:
        raise ValueError(f"{name!r} does not name a projection inside an encoder layer ('…layer.<N>.….<name>')")
    return int(match.group(1)), match.group(2)


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
    half = t_quantile_95(gaps.size - 1) * gaps.std(ddof=1) / math.sqrt(gaps.size)
    low, high = gaps.mean() - half, gaps.mean() + half
    verdict = (
        "yes, at this scale"
        if low > 0
        else "no: LoRA's is closer, at this scale"
        if high < 0
        else "these seeds cannot tell"
    )
    return f"{head}; mean {gaps.mean():+.2f}, 95 % interval [{low:+.2f}, {high:+.2f}]: {verdict}."


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


# ---------------------------------------------------------------------------------------------------------------
# Gradient statistics (Exercise 3)


def _teacher_weight(W0: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    """Return W0 with a random rank-`rank` change of direction and a random change of every row's magnitude.

    Rank-r DoRA (r >= rank) can represent this teacher exactly: its direction W0 + s·BA reaches W0 + U Vᵀ scaled
    per row, and its magnitude m reaches every row norm. Rank-r LoRA cannot: W − W0 contains (D − I) W0 for the
    diagonal D of per-row rescalings, which is full rank for a full-rank W0.

    Args:
        W0: (out_features, in_features).

    Returns:
        (out_features, in_features): rows W_i = m_i (W0 + U Vᵀ)_i / ||(W0 + U Vᵀ)_i||.
    """
    out_features, in_features = W0.shape
    row_norm = torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    # The low-rank change is ~30 % of a row's length: a clear turn of the direction, reachable by rank r.
    U = torch.randn(out_features, rank, generator=generator, dtype=W0.dtype) / math.sqrt(rank)
    V = torch.randn(rank, in_features, generator=generator, dtype=W0.dtype) / math.sqrt(in_features)
    turned = W0 + 0.3 * row_norm * (U @ V)
    # Magnitudes scaled by e^{N(0, 0.2²)}: about ±20 % per output feature.
    magnitude = row_norm * torch.exp(0.2 * torch.randn(out_features, 1, generator=generator, dtype=W0.dtype))
    return magnitude * turned / torch.linalg.vector_norm(turned, dim=1, keepdim=True)


def _grad_norm(parameter: torch.Tensor) -> float:
    return 0.0 if parameter.grad is None else float(parameter.grad.detach().norm())


@dataclass
class GradientStats:
    """Exercise 3's run: per-step gradient norms and losses of a LoRA layer and a DoRA layer on one pretrained layer.

    Attributes:
        layer: module name of the adapted nn.Linear.
        shape: its weight's (out_features, in_features).
        device: where the run ran.
        steps: [0, …, steps - 1].
        lora: {"loss", "lora_A", "lora_B": one value per step} (gradient norms read before each optimiser step).
        dora: the same, plus "magnitude".
    """

    layer: str
    shape: tuple[int, int]
    device: str
    steps: list[int]
    lora: dict[str, list[float]]
    dora: dict[str, list[float]]

    def to_json(self) -> dict:
        return asdict(self)


def gradient_norms_during_training(
    dora_layer_class: Callable[..., nn.Module],
    base_model: nn.Module | None = None,
    *,
    layer: str = GRADIENT_LAYER,
    steps: int = 200,
    r: int = 8,
    lora_alpha: float = 16.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    teacher_rank: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> GradientStats:
    """Train a LoRA layer (PEFT) and a DoRA layer on the same pretrained linear layer; record gradient norms per step.

    Both wrap copies of the same pretrained nn.Linear, start from the same lora_A (lora_B = 0), see the same
    batches and use Adam with the same learning rate. The task is regression onto a teacher: the same layer with
    a random rank-`teacher_rank` change of direction and a random change of every row's magnitude, which rank-r
    DoRA can represent exactly and rank-r LoRA cannot (see _teacher_weight). Inputs are standard normal (the
    layer's input is LayerNorm-ed in the model). Gradients are read after `backward` and before the optimiser
    step, so step 0 shows the initialisation (where lora_A's gradient is exactly 0).

    Args:
        dora_layer_class: `DoRALinear`-like class, called as `dora_layer_class(base_layer, r=..., lora_alpha=...,
            lora_dropout=0.0)`, with parameters `lora_A` (r, in), `lora_B` (out, r), `magnitude` (out, 1).
        base_model: the pretrained model holding `layer` (not modified); None loads the packaged MiniLM.
        layer: module name of the nn.Linear to adapt.
        steps: optimiser steps.
        r, lora_alpha: the adapters' rank and scale (scaling = lora_alpha / r).
        lr: Adam's learning rate.
        batch_size: inputs per step.
        teacher_rank: rank of the teacher's change of direction.
        seed: seeds the teacher, the inputs and lora_A (drawn on the CPU, so every device sees the same numbers).
        device: where both layers train; None = LabConfig.device ($LAB_DEVICE, default CUDA when available).

    Returns:
        A GradientStats.
    """
    from labhelpers.models import peft_layer

    device = resolve_device(device)
    if base_model is None:
        from labhelpers.models import load_base_model

        base_model, _ = load_base_model(verbose=False)
    try:
        pretrained = base_model.get_submodule(layer)
    except AttributeError:
        raise ValueError(
            f"the model has no layer {layer!r}: pass the name of an nn.Linear, e.g. {GRADIENT_LAYER!r}"
        ) from None
    if not isinstance(pretrained, nn.Linear):
        raise ValueError(f"{layer!r} is a {type(pretrained).__name__}, not an nn.Linear")
    pretrained = copy.deepcopy(pretrained).float().cpu().requires_grad_(False)
    out_features, in_features = pretrained.weight.shape

    generator = torch.Generator().manual_seed(seed)
    teacher = _teacher_weight(pretrained.weight.detach(), teacher_rank, generator).to(device)
    teacher_bias = None if pretrained.bias is None else pretrained.bias.detach().to(device)

    torch.manual_seed(seed)
    # The layer class get_peft_model puts in place of an nn.Linear.
    lora = peft_layer(copy.deepcopy(pretrained), use_dora=False, r=r, lora_alpha=lora_alpha).to(device)
    dora = dora_layer_class(copy.deepcopy(pretrained).to(device), r=r, lora_alpha=lora_alpha, lora_dropout=0.0)
    dora = dora.to(device)
    with torch.no_grad():
        # Same starting point for both: PEFT's Kaiming-uniform lora_A, lora_B = 0.
        dora.lora_A.copy_(lora.lora_A["default"].weight)
        dora.lora_B.zero_()

    parameters = {
        "lora": {"lora_A": lora.lora_A["default"].weight, "lora_B": lora.lora_B["default"].weight},
        "dora": {"lora_A": dora.lora_A, "lora_B": dora.lora_B, "magnitude": dora.magnitude},
    }
    layers = {"lora": lora, "dora": dora}
    optimizers = {m: torch.optim.Adam(list(p.values()), lr=lr) for m, p in parameters.items()}
    history = {m: {"loss": [], **{name: [] for name in p}} for m, p in parameters.items()}
    for _ in range(steps):
        x = torch.randn(batch_size, in_features, generator=generator).to(device)
        target = nn.functional.linear(x, teacher, teacher_bias)
        for method, module in layers.items():
            module.train()
            loss = nn.functional.mse_loss(module(x), target)
            loss.backward()
            history[method]["loss"].append(float(loss.detach()))
            for name, parameter in parameters[method].items():
                history[method][name].append(_grad_norm(parameter))
            optimizers[method].step()
            optimizers[method].zero_grad()
    return GradientStats(
        layer=layer, shape=(out_features, in_features), device=str(device), steps=list(range(steps)),
        lora=history["lora"], dora=history["dora"],
    )  # fmt: skip
