"""What Figure 2 measured, in words and as a table, from the measured numbers only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from labhelpers.stats import t_interval

if TYPE_CHECKING:
    from labhelpers.analysis.records import Trajectory

_STATISTICS = ("pearson", "spearman", "slope", "within_checkpoint")


def spread_text(mean: float, std: float, n: int, statistic: str = "pearson") -> str:
    """Write a mean over seeds with its spread: '+0.96 ± 0.02', a slope to 3 significant digits, one seed '+0.96'.

    Args:
        mean, std, n: what Trajectory.spread returns.
        statistic: "slope" for 3 significant digits (and its spread to as many decimals); else 2 decimals.
    """
    decimals = 2
    if statistic == "slope" and math.isfinite(mean) and mean != 0:
        decimals = max(0, 2 - math.floor(math.log10(abs(mean))))
    return f"{mean:+.{decimals}f} ± {std:.{decimals}f}" if n > 1 else f"{mean:+.{decimals}f}"


def figure2_table(trajectory: Trajectory, labels: Mapping[str, str] | None = None) -> str:
    """Return Figure 2's statistics as text: per target and method, the trained points, then their null baseline.

    Args:
        trajectory: from decomposition_trajectory (or Trajectory.from_json).
        labels: display names of the methods.

    Returns:
        A table: mean ± std over seeds of Pearson, Spearman, slope, within-checkpoint r, the per-row Spearman, and
        the paper's correlation; a "null" row under each method with the same statistics of its null points.
    """
    labels = labels or {}
    paper = trajectory.paper.get("correlation", {})
    head = ("Pearson", "Spearman", "slope", "within ckpt", "per-row ρ")
    width = max([8, *(len(labels.get(m, m)) + 1 for m in trajectory.methods)])
    lines = [
        f"{'target':<7}{'method':<{width}}{'seeds':>6}  " + "  ".join(f"{h:>14}" for h in head) + "  paper (query)"
    ]
    for target in trajectory.targets:
        for method in trajectory.methods:
            if not trajectory.select(method, target):
                continue
            cells = [spread_text(*trajectory.spread(method, target, s), s) for s in _STATISTICS]
            cells.append(
                spread_text(*trajectory.row_spread(method, target), "rho")
                if trajectory.row_spearman(method, target)
                else ""
            )
            reference = f"{paper[method]:+.2f}" if method in paper and target == "query" else ""
            lines.append(
                f"{target:<7}{labels.get(method, method):<{width}}{len(trajectory.seeds(method)):>6}  "
                + "  ".join(f"{c:>14}" for c in cells) + f"  {reference:>13}"
            )  # fmt: skip
            if trajectory.has_baseline(method, target):
                cells = [spread_text(*trajectory.spread(method, target, s, baseline=True), s) for s in _STATISTICS]
                lines.append(f"{target:<7}{'  null':<{width}}{'':>6}  " + "  ".join(f"{c:>14}" for c in cells))
    lines.append("(mean ± sample std over seeds; each seed's statistic is over its layers × checkpoints)")
    if trajectory.baseline:
        kinds = ", ".join(f"{labels.get(m, m)} {trajectory.null_kind(m)}" for m in trajectory.methods)
        lines.append(f"null: W0 + a random update with each point's ΔD, nothing learned ({kinds})")
    if trajectory.rows:
        lines.append("per-row ρ: Spearman over rows of 1 − cos_i and e_i = ||W_i|| − ||W0_i|| / cos_i at the final "
                     "checkpoint, mean over layers")  # fmt: skip
    return "\n".join(lines)


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
    the full fine-tuning runs there are, and the line says so: the spread is then the adapters' only, and with one
    full fine-tuning run the line gives the interval but no verdict.
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
    if len(full) < 2:
        # The interval holds the adapters' seed-to-seed spread only: against one full run, whose own spread is
        # unknown, an interval that excludes 0 still says nothing about full fine-tuning's next seed.
        verdict = "full FT ran one seed, whose own spread is not in this interval: no verdict"
        return (
            f"{head}; mean {mean:+.2f}, 95 % interval [{low:+.2f}, {high:+.2f}] over the adapters' seeds: {verdict}."
        )
    verdict = (
        "yes, at this scale"
        if low > 0
        else "no: LoRA's is closer, at this scale"
        if high < 0
        else "these seeds cannot tell"
    )
    return f"{head}; mean {mean:+.2f}, 95 % interval [{low:+.2f}, {high:+.2f}]: {verdict}."


def _method_line(trajectory: Trajectory, method: str, target: str, label: str) -> str:
    """One method's correlations on one target, with their spread and, for query, the paper's sign."""
    paper = trajectory.paper.get("correlation", {})
    per_seed = trajectory.per_seed(method, target)
    pearson = [c.pearson for c in per_seed.values()]
    mean, std, n = trajectory.spread(method, target, "pearson")
    within, within_std, _ = trajectory.spread(method, target, "within_checkpoint")
    spread = f" ± {std:.2f}" if n > 1 else ""
    within_spread = f" ± {within_std:.2f}" if n > 1 else ""
    seeds = (
        f" over {n} seeds (per seed {', '.join(f'{v:+.2f}' for v in pearson)})"
        if n > 1
        else f" (seed {next(iter(per_seed))} only)"
    )
    line = f"- {label}: Pearson {mean:+.2f}{spread}{seeds}; within a checkpoint {within:+.2f}{within_spread}"
    if method in paper and target == "query":
        line += f"; paper {paper[method]:+.2f}: {_sign_verdict(pearson, paper[method])}"
    return line + "."


def _null_line(trajectory: Trajectory, method: str, target: str) -> str:
    """The null baseline's correlation and slope beside the trained ones."""
    null = {s: spread_text(*trajectory.spread(method, target, s, baseline=True), s) for s in ("pearson", "slope")}
    trained = spread_text(*trajectory.spread(method, target, "slope"), "slope")
    return (
        f"  null ({trajectory.null_kind(method)} random updates with the same ΔD, nothing learned): Pearson "
        f"{null['pearson']}; slope of ΔM on ΔD {null['slope']}, trained {trained}."
    )


def _row_line(trajectory: Trajectory, method: str, target: str) -> str:
    """The per-row Spearman at the final checkpoint: over seeds, and per layer (mean over seeds)."""
    per_seed = trajectory.row_spearman(method, target)
    layers = sorted({layer for values in per_seed.values() for layer in values})
    per_layer = ", ".join(
        f"L{layer} {np.mean([v[layer] for v in per_seed.values() if layer in v]):+.2f}" for layer in layers
    )
    return (
        f"  per row at the final checkpoint, Spearman of 1 − cos_i and the excess magnitude e_i: "
        f"{spread_text(*trajectory.row_spread(method, target), 'rho')} (mean over layers; per layer, mean over seeds: "
        f"{per_layer})."
    )


def figure2_findings(trajectory: Trajectory, labels: Mapping[str, str] | None = None) -> list[str]:
    """Say what Figure 2 measured, target by target: correlations with their spread, against the paper's.

    Args:
        trajectory: from decomposition_trajectory.
        labels: display names of the methods.

    Returns:
        Lines of text built from the measured numbers only: per method its correlations, its null baseline's
        correlation and slope, and its per-row Spearman (when measured).
    """
    labels = labels or {}
    lines = []
    for target in trajectory.targets:
        figure = "Figure 2" if target == "query" else "Figure 7"
        lines.append(f"ΔD–ΔM on the {target} matrices (the paper's {figure}); mean ± std over seeds:")
        methods = [m for m in trajectory.methods if trajectory.select(m, target)]
        for method in methods:
            lines.append(_method_line(trajectory, method, target, labels.get(method, method)))
            if trajectory.has_baseline(method, target):
                lines.append(_null_line(trajectory, method, target))
            if trajectory.row_spearman(method, target):
                lines.append(_row_line(trajectory, method, target))
        if {"full", "lora", "dora"} <= set(methods):
            lines.append(_closer_line(trajectory, target))
    return lines
