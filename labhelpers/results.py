"""What a comparison measured, in numbers and in words: means over seeds, paired differences, the notebook's findings.

`summarize` and `paired_differences` return typed records (`MethodSummary`, `PairedDifference`); `insights` says in
plain sentences what they and Figure 2 (analysis.figure2_findings) show, from the measured numbers only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from labhelpers.analysis import Trajectory, figure2_findings
from labhelpers.stats import mean_std, t_interval
from labhelpers.training import LABELS, YOUR_LAYER, Comparison

LAYER_ACCURACY_TOLERANCE = 0.005
"""Largest accuracy gap between your layer's run and PEFT's DoRA run of the same seed that counts as agreement: on
872 validation sentences, 4 predictions (a float-noise flip of a sentence near the decision boundary moves 0.0011)."""
LAYER_CURVE_RTOL = 1e-3
"""Largest relative gap of a training loss or a ΔM/ΔD between the two runs that counts as float noise. Measured on
MiniLM (63 steps, 1,000 sentences): the solutions' DoRALinear against PEFT's DoRA, at most 2e-6 (float32 round-off
growing through training); two seeds of PEFT's DoRA, 3e-2 to 3e-1; a layer with a known mistake (the norm not
detached, dropout on the frozen path too), 9e-3 and 9e-2 after only 4 steps."""


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
        width = max(8, *(len(LABELS[method]) + 1 for method in summary))
        print(
            f"{'method':<{width}}{'seeds':>6}  {'val accuracy':>15}  {'binomial SE':>11}  {'final train loss':>17}  "
            f"{'trainable params':>17}  {'seconds/run':>12}"
        )
        for method, s in summary.items():
            print(
                f"{LABELS[method]:<{width}}{len(s.seeds):>6}  "
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
        agreement = layer_agreement(comparison)
        if agreement is not None:
            print("\n" + agreement.table() + "\n" + agreement.verdict())
        for note in comparison.notes:
            print(note)
    return summary


@dataclass(frozen=True)
class LayerAgreement:
    """Your DoRALinear's run ("dora_yours") beside PEFT's DoRA run of the same seed, checkpoint by checkpoint.

    Attributes:
        seed: the seed both ran.
        steps: optimiser steps at each checkpoint.
        accuracy: (yours, PEFT's) final validation accuracy.
        loss: per checkpoint, (yours, PEFT's) mean training loss since the previous checkpoint.
        delta_m, delta_d: per checkpoint, (yours, PEFT's) mean over the adapted matrices.
        loss_gap: largest relative gap of the training loss (checkpoints and epochs).
        change_gap: largest relative gap of ΔM or ΔD over checkpoints and adapted matrices.
    """

    seed: int
    steps: tuple[int, ...]
    accuracy: tuple[float, float]
    loss: tuple[tuple[float, float], ...]
    delta_m: tuple[tuple[float, float], ...]
    delta_d: tuple[tuple[float, float], ...]
    loss_gap: float
    change_gap: float

    @property
    def accuracy_gap(self) -> float:
        return abs(self.accuracy[0] - self.accuracy[1])

    @property
    def agrees(self) -> bool:
        """Whether the runs agree: accuracy within LAYER_ACCURACY_TOLERANCE, curves within LAYER_CURVE_RTOL."""
        curves = max(self.loss_gap, self.change_gap) <= LAYER_CURVE_RTOL
        return self.accuracy_gap <= LAYER_ACCURACY_TOLERANCE and curves

    def table(self) -> str:
        """Return the two runs side by side: loss, mean ΔM and mean ΔD at each checkpoint, then accuracy."""
        lines = [
            f"Your DoRALinear beside PEFT's DoRA, seed {self.seed} (same initial adapters, head, batches and "
            f"dropout masks):",
            f"{'step':>6}  {'train loss: yours':>17} {'PEFT':>8}  {'mean ΔM: yours':>15} {'PEFT':>10}  "
            f"{'mean ΔD: yours':>15} {'PEFT':>10}",
        ]
        for step, loss, m, d in zip(self.steps, self.loss, self.delta_m, self.delta_d, strict=True):
            lines.append(
                f"{step:>6}  {loss[0]:>17.4f} {loss[1]:>8.4f}  {m[0]:>15.4e} {m[1]:>10.4e}  {d[0]:>15.4e} {d[1]:>10.4e}"
            )
        lines.append(f"validation accuracy: yours {self.accuracy[0]:.4f}, PEFT {self.accuracy[1]:.4f}")
        return "\n".join(lines)

    def verdict(self) -> str:
        """Say in one line whether your layer trains as PEFT's DoRA does, with the numbers and the tolerances."""
        gaps = (
            f"accuracy differs by {self.accuracy_gap:.4f} (allowed {LAYER_ACCURACY_TOLERANCE}), the training loss by "
            f"at most {self.loss_gap:.1e} and ΔM/ΔD by at most {self.change_gap:.1e}, relative (allowed "
            f"{LAYER_CURVE_RTOL:.0e}, float noise)"
        )
        if self.agrees:
            return f"✔ Your layer trains as PEFT's DoRA does on seed {self.seed}: {gaps}."
        return (
            f"✘ Your layer does not train as PEFT's DoRA does on seed {self.seed}: {gaps}. Gaps beyond float noise "
            f"mean your DoRALinear computes something other than PEFT's DoRA (its outputs or gradients): run "
            f"Exercise 2's check cell."
        )


def _relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def layer_agreement(comparison: Comparison) -> LayerAgreement | None:
    """Compare your layer's run with PEFT's DoRA run of the same seed; None when your layer did not run.

    Args:
        comparison: what run_comparison returned (or read_comparison / Comparison.from_json read back).

    Returns:
        A LayerAgreement, or None.
    """
    yours = comparison.runs_of(YOUR_LAYER)
    peft = {run.seed: run for run in comparison.runs_of("dora")}
    if not yours or yours[0].seed not in peft:
        return None
    mine, theirs = yours[0], peft[yours[0].seed]
    pairs = list(zip(mine.checkpoints, theirs.checkpoints, strict=True))
    losses = [(a.train_loss, b.train_loss) for a, b in pairs] + list(zip(mine.train_loss, theirs.train_loss))
    changes = [
        (a.decomposition[layer][i], b.decomposition[layer][i])
        for a, b in pairs
        for layer in b.decomposition
        for i in (0, 1)
    ]

    def means(i: int) -> tuple[tuple[float, float], ...]:
        return tuple(
            (sum(v[i] for v in a.decomposition.values()) / len(a.decomposition),
             sum(v[i] for v in b.decomposition.values()) / len(b.decomposition))
            for a, b in pairs
        )  # fmt: skip

    return LayerAgreement(
        seed=mine.seed, steps=tuple(c.step for c in theirs.checkpoints),
        accuracy=(mine.val_accuracy, theirs.val_accuracy), loss=tuple(losses[: len(pairs)]),
        delta_m=means(0), delta_d=means(1), loss_gap=max(_relative_gap(a, b) for a, b in losses),
        change_gap=max(_relative_gap(a, b) for a, b in changes),
    )  # fmt: skip


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


PREDICTED_METHODS = ("full", "lora", "dora")
"""The methods a prediction written before Exercise 4's run covers (your layer's run is a check, not a method)."""


def _predicted_accuracy(value: object) -> tuple[float | None, str | None]:
    """Read one predicted accuracy: a fraction, or a percentage when above 1; (None, why) when it is not one."""
    if value is None or value is ...:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        return None, f"{value!r} is not an accuracy: write a fraction such as 0.8 (or a percentage such as 80)"
    return (value / 100 if value > 1 else float(value)), None


def _predicted_method(value: object, methods) -> tuple[str | None, str | None]:
    """Read the predicted fastest method, by key ("lora") or by label ("LoRA"); (None, why) when it is neither."""
    if value is None or value is ...:
        return None, None
    names = {name: method for method in methods for name in (method, LABELS[method].lower())}
    method = names.get(str(value).strip().lower())
    if method is None:
        return None, f"fastest={value!r} names no method: write one of {', '.join(map(repr, methods))}"
    return method, None


def prediction_table(prediction: Mapping | None, summary: Mapping[str, MethodSummary]) -> str:
    """Set a prediction written before the run beside what the run measured.

    Args:
        prediction: {"full": 0.82, "lora": ..., "dora": ..., "fastest": "lora"}: validation accuracies as fractions
            (a number above 1 is read as a percentage) and the method with the shortest run; a missing entry shows
            as "—". None when no prediction was written.
        summary: what summarize returned.

    Returns:
        Per method the predicted accuracy, the measured one (mean ± std over seeds) and the seconds per run; then the
        fastest method predicted and measured; then a note for each entry that could not be read.
    """
    methods = [method for method in PREDICTED_METHODS if method in summary]
    notes = []
    if prediction is not None and not isinstance(prediction, Mapping):
        notes.append(
            f"prediction is a {type(prediction).__name__}, not a dict: write it as "
            f"{{'full': 0.8, 'lora': 0.8, 'dora': 0.8, 'fastest': 'lora'}} with your own numbers."
        )
    prediction = dict(prediction) if isinstance(prediction, Mapping) else {}
    if not prediction and not notes:
        notes.append("No prediction was written before the run: the measured results alone.")
    width = max(8, *(len(LABELS[method]) + 1 for method in methods))
    lines = [f"{'method':<{width}}{'predicted':>10}  {'measured accuracy':>18}  {'seconds/run':>11}"]
    for method in methods:
        guess, note = _predicted_accuracy(prediction.get(method))
        notes += [f"{method}: {note}"] if note else []
        s = summary[method]
        measured = _spread(s.val_accuracy_mean, s.val_accuracy_std, len(s.seeds))
        predicted = "—" if guess is None else f"{guess:.3f}"
        lines.append(f"{LABELS[method]:<{width}}{predicted:>10}  {measured:>18}  {s.seconds_mean:>11.0f}")
    if methods:
        fastest = min(methods, key=lambda method: summary[method].seconds_mean)
        guess, note = _predicted_method(prediction.get("fastest"), methods)
        notes += [note] if note else []
        lines.append(
            f"fastest run: predicted {'—' if guess is None else LABELS[guess]}, measured {LABELS[fastest]} "
            f"({summary[fastest].seconds_mean:.0f} s per run)"
        )
    return "\n".join(lines + notes)
