"""What a comparison measured, in numbers and in words: means over seeds, paired differences, the notebook's findings.

`summarize` and `paired_differences` return typed records (`MethodSummary`, `PairedDifference`); `insights` says in
plain sentences what they and Figure 2 (analysis.figure2_findings) show, from the measured numbers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labhelpers.analysis import Trajectory, figure2_findings
from labhelpers.stats import mean_std, t_interval
from labhelpers.training import LABELS, Comparison


@dataclass(frozen=True)
class MethodSummary:
    """One method's runs, averaged over seeds.

    Attributes:
        method, seeds: which runs.
        val_accuracy_mean, val_accuracy_std: mean and sample standard deviation over seeds (std 0 for one seed).
        binomial_se: sqrt(p (1 - p) / n_eval) at the mean accuracy p: the sampling error of one accuracy measured
            on n_eval validation sentences.
        train_loss_mean, train_loss_std: of the last epoch's mean batch loss.
        trainable_params: of one run.
        seconds_mean, seconds_std: time per run (training and evaluation).
    """

    method: str
    seeds: tuple[int, ...]
    val_accuracy_mean: float
    val_accuracy_std: float
    binomial_se: float
    train_loss_mean: float
    train_loss_std: float
    trainable_params: int
    seconds_mean: float
    seconds_std: float


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of `method` minus that of `baseline`, seed by seed (runs with one seed share batches and head init).

    Attributes:
        method, baseline: the two methods.
        seeds: the seeds both ran.
        differences: per seed, in accuracy (fractions, not points).
        mean, standard_error: of the differences (standard error = sample std / sqrt(n); nan for one seed).
        interval: the 95 % Student-t interval of the mean difference, (nan, nan) for one seed.
    """

    method: str
    baseline: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    standard_error: float
    interval: tuple[float, float]

    @property
    def separates(self) -> bool:
        """Whether the 95 % interval excludes 0 (False when it is unknown)."""
        low, high = self.interval
        return bool(low > 0 or high < 0)


def _spread(mean: float, std: float, n: int, digits: int = 3) -> str:
    """'0.817 ± 0.015' over several seeds; one seed has no spread: '0.823 (1 seed)'."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f} (1 seed)"


def summarize(comparison: Comparison, verbose: bool = True) -> dict[str, MethodSummary]:
    """Average each method's runs over seeds; print one line per method and the paired differences.

    Args:
        comparison: what run_comparison returned (or Comparison.from_json of a saved ex4_results.json).
        verbose: print the table.

    Returns:
        {method: MethodSummary}.
    """
    summary = {}
    for method in comparison.methods:
        runs = comparison.runs_of(method)
        accuracy = mean_std(run.val_accuracy for run in runs)
        loss = mean_std(run.train_loss[-1] for run in runs)
        seconds = mean_std(run.seconds for run in runs)
        summary[method] = MethodSummary(
            method=method, seeds=tuple(run.seed for run in runs), val_accuracy_mean=accuracy[0],
            val_accuracy_std=accuracy[1],
            binomial_se=math.sqrt(accuracy[0] * (1 - accuracy[0]) / comparison.n_eval),
            train_loss_mean=loss[0], train_loss_std=loss[1], trainable_params=runs[0].trainable_params,
            seconds_mean=seconds[0], seconds_std=seconds[1],
        )  # fmt: skip
    if verbose:
        print(
            f"{'method':<8}{'seeds':>6}  {'val accuracy':>15}  {'binomial SE':>11}  {'final train loss':>17}  "
            f"{'trainable params':>17}  {'seconds/run':>12}"
        )
        for method, s in summary.items():
            print(
                f"{LABELS[method]:<8}{len(s.seeds):>6}  "
                f"{_spread(s.val_accuracy_mean, s.val_accuracy_std, len(s.seeds)):>15}  {s.binomial_se:>11.3f}  "
                f"{_spread(s.train_loss_mean, s.train_loss_std, len(s.seeds)):>17}  {s.trainable_params:>17,}  "
                f"{_spread(s.seconds_mean, s.seconds_std, len(s.seeds), 0):>12}"
            )
        print(
            f"(± is the sample standard deviation over seeds; the binomial SE is the sampling error of one accuracy "
            f"on {comparison.n_eval} validation sentences)"
        )
        for difference in paired_differences(comparison):
            print(_difference_line(difference))
    return summary


def paired_differences(comparison: Comparison) -> list[PairedDifference]:
    """Compare every pair of methods seed by seed: DoRA − LoRA, full − LoRA, full − DoRA (those that ran).

    Args:
        comparison: what run_comparison returned.

    Returns:
        One PairedDifference per pair of methods that share at least one seed.
    """
    pairs = [("dora", "lora"), ("full", "lora"), ("full", "dora")]
    differences = []
    for method, baseline in pairs:
        a = {run.seed: run.val_accuracy for run in comparison.runs_of(method)}
        b = {run.seed: run.val_accuracy for run in comparison.runs_of(baseline)}
        seeds = tuple(sorted(a.keys() & b.keys()))
        if not seeds:
            continue
        values = [a[s] - b[s] for s in seeds]
        mean, standard_error, interval = t_interval(values)
        differences.append(PairedDifference(method, baseline, seeds, tuple(values), mean, standard_error, interval))
    return differences


def _difference_line(d: PairedDifference) -> str:
    per_seed = ", ".join(f"{100 * v:+.1f}" for v in d.differences)
    head = f"{LABELS[d.method]} − {LABELS[d.baseline]}: {per_seed} points (seed{'s' * (len(d.seeds) > 1)} "
    head += ", ".join(map(str, d.seeds)) + ")"
    if len(d.seeds) < 2:
        return head + "; one paired seed: no spread, so no verdict."
    low, high = d.interval
    verdict = (
        "the 95 % interval excludes 0"
        if d.separates
        else "the 95 % interval includes 0: these seeds cannot separate the two"
    )
    return (
        f"{head}; mean {100 * d.mean:+.1f} ± {100 * d.standard_error:.1f} (standard error), 95 % interval "
        f"[{100 * low:+.1f}, {100 * high:+.1f}]: {verdict}."
    )


def insights(comparison: Comparison, trajectory: Trajectory | None = None) -> str:
    """Say in plain sentences what this notebook measured: accuracy and paired gaps, cost, Figure 2's correlations.

    Args:
        comparison: what run_comparison returned.
        trajectory: what analysis.decomposition_trajectory returned, or None.

    Returns:
        A few lines of text built from the measured numbers only.
    """
    summary = summarize(comparison, verbose=False)
    lines = ["Accuracy (validation, mean ± std over seeds):"]
    for method, s in summary.items():
        lines.append(
            f"- {LABELS[method]}: {_spread(s.val_accuracy_mean, s.val_accuracy_std, len(s.seeds))}"
            f"{f' over {len(s.seeds)} seeds' if len(s.seeds) > 1 else ''} "
            f"(one accuracy on {comparison.n_eval} sentences has a binomial SE of {s.binomial_se:.3f}); "
            f"{s.trainable_params:,} trainable parameters; {s.seconds_mean:.0f} s per run."
        )
    lines += [f"- {_difference_line(d)}" for d in paired_differences(comparison)]
    if {"lora", "dora"} <= summary.keys():
        lora, dora = summary["lora"], summary["dora"]
        extra = dora.trainable_params - lora.trainable_params
        ratio = dora.seconds_mean / lora.seconds_mean if lora.seconds_mean > 0 else math.nan
        lines.append(
            f"- DoRA's cost: {extra:,} more trainable parameters than LoRA (+{100 * extra / lora.trainable_params:.1f} "
            f"%, one magnitude per adapted output feature) and {ratio:.2f}x LoRA's time per run on this machine."
        )
    if trajectory is not None:
        lines.append("")
        lines += figure2_findings(trajectory, labels=LABELS)
    return "\n".join(lines)
