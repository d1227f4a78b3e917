"""results: means over seeds, paired differences with t intervals, and the sentences that report them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labhelpers import analysis, results, training


def _records(accuracies: dict[str, list[float]], n_eval=872):
    runs = [
        training.Run(
            method=method,
            seed=seed,
            lr=1e-3,
            val_accuracy_per_epoch=[a],
            train_loss=[0.4 + 0.01 * seed],
            checkpoints=[],
            trainable_params={"full": 1000, "lora": 10, "dora": 12}[method],
            total_params=1000,
            train_seconds=3.0 + seed,
            eval_seconds=1.0,
            lora_config=None,
        )  # fmt: skip
        for method, values in accuracies.items()
        for seed, a in enumerate(values)
    ]
    return training.Comparison(
        settings=training.Settings(methods=tuple(accuracies), seeds=tuple(range(3))), runs=runs, n_train=100,
        n_eval=n_eval, device="cpu", model="test", torch_threads=1,
    )  # fmt: skip


def test_summarize_gives_mean_sample_std_and_binomial_error(capsys):
    comparison = _records({"lora": [0.80, 0.84, 0.83], "dora": [0.81, 0.86, 0.83]})
    summary = results.summarize(comparison)
    lora = summary["lora"]
    assert lora.val_accuracy_mean == pytest.approx(np.mean([0.80, 0.84, 0.83]))
    assert lora.val_accuracy_std == pytest.approx(np.std([0.80, 0.84, 0.83], ddof=1))
    assert lora.binomial_se == pytest.approx(math.sqrt(lora.val_accuracy_mean * (1 - lora.val_accuracy_mean) / 872))
    assert lora.train_loss_mean == pytest.approx(0.41) and lora.seconds_mean == pytest.approx(5.0)
    out = capsys.readouterr().out
    assert "0.823 ± 0.021" in out and "DoRA − LoRA: +1.0, +2.0, +0.0 points" in out


@pytest.mark.parametrize(
    "lora, dora, separates",
    [
        ([0.80, 0.84, 0.83], [0.81, 0.85, 0.84], True),  # +1 point every seed: no spread, interval [+1, +1]
        ([0.80, 0.84, 0.83], [0.81, 0.86, 0.83], False),  # +1, +2, 0: t(2) = 4.30 makes the interval include 0
        ([0.80, 0.84, 0.83], [0.78, 0.81, 0.81], True),
    ],
    ids=["constant-gap", "noisy-gap", "negative-gap"],
)
def test_paired_differences_use_the_same_seeds_and_a_t_interval(lora, dora, separates):
    (difference,) = results.paired_differences(_records({"lora": lora, "dora": dora}))
    values = np.subtract(dora, lora)
    assert (difference.method, difference.baseline, difference.seeds) == ("dora", "lora", (0, 1, 2))
    assert difference.differences == pytest.approx(values)
    assert difference.mean == pytest.approx(values.mean())
    assert difference.standard_error == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert difference.interval == pytest.approx(
        (values.mean() - 4.303 * difference.standard_error, values.mean() + 4.303 * difference.standard_error)
    )
    assert difference.separates == separates


def test_paired_differences_of_three_methods_and_one_seed():
    differences = results.paired_differences(_records({"full": [0.9], "lora": [0.8], "dora": [0.85]}))
    assert [(d.method, d.baseline) for d in differences] == [("dora", "lora"), ("full", "lora"), ("full", "dora")]
    assert math.isnan(differences[0].standard_error) and not differences[0].separates
    assert "no verdict" in results._difference_line(differences[0])


def test_insights_state_only_measured_numbers():
    text = results.insights(
        _records({"full": [0.9, 0.91, 0.92], "lora": [0.8, 0.84, 0.83], "dora": [0.81, 0.85, 0.84]})
    )
    assert "full FT: 0.910 ± 0.010 over 3 seeds" in text
    assert "binomial SE of 0.010" in text  # sqrt(0.91 · 0.09 / 872)
    assert "2 more trainable parameters than LoRA (+20.0 %" in text
    assert "DoRA − LoRA: +1.0, +1.0, +1.0 points" in text


def test_insights_add_figure_2s_findings_when_given_a_trajectory():
    comparison = _records({"full": [0.9], "lora": [0.8], "dora": [0.85]})
    points = [
        analysis.DecompositionPoint(
            method, 0, "query", layer, 1, 1, 0.5 + sign * 0.01 * (layer + 1), 0.01 * (layer + 1)
        )
        for method, sign in (("full", -1), ("lora", 1), ("dora", -1))
        for layer in range(3)
    ]
    text = results.insights(comparison, analysis.Trajectory(points))
    findings = analysis.figure2_findings(analysis.Trajectory(points), labels=training.LABELS)
    assert text.endswith("\n\n" + "\n".join(findings))
    assert "DoRA: Pearson -1.00 (seed 0 only)" in text


def _layer_runs(accuracy_gap=0.0, loss_scale=1.0, change_scale=1.0):
    """PEFT's DoRA and your layer's run of seed 0, two checkpoints of two layers; yours off by the given amounts."""

    def run(method, accuracy, loss, change):
        checkpoints = [
            training.Checkpoint(step, step / 4, loss * (0.7 - 0.1 * k), {
                "layer.0.query": (change * 0.01 * step, change * 0.001 * step),
                "layer.0.value": (change * 0.02 * step, change * 0.002 * step),
            })
            for k, step in enumerate((2, 4))
        ]  # fmt: skip
        return training.Run(method, 0, 2e-3, [accuracy], [loss * 0.65], checkpoints, 79, 1000, 2.0, 1.0, None)

    runs = [run("dora", 0.85, 1.0, 1.0), run(training.YOUR_LAYER, 0.85 + accuracy_gap, loss_scale, change_scale)]
    return training.Comparison(
        settings=training.Settings(methods=("dora",), seeds=(0,)), runs=runs, n_train=64, n_eval=872,
        device="cpu", model="test", torch_threads=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "change, agrees, gap",
    [
        (dict(), True, "accuracy differs by 0.0000 (allowed 0.005)"),
        (dict(accuracy_gap=0.0034, loss_scale=1 + 1e-6), True, "the training loss by at most 1.0e-06"),
        (dict(accuracy_gap=0.0069), False, "accuracy differs by 0.0069"),
        (dict(loss_scale=1.01), False, "the training loss by at most 1.0e-02"),
        (dict(change_scale=1.5), False, "ΔM/ΔD by at most 5.0e-01"),
    ],
    ids=["identical", "float-noise", "accuracy-apart", "loss-apart", "weights-apart"],
)
def test_your_layer_is_compared_with_pefts_dora_of_the_same_seed(change, agrees, gap, capsys):
    comparison = _layer_runs(**change)
    agreement = results.layer_agreement(comparison)
    assert agreement.agrees is agrees and agreement.seed == 0 and agreement.steps == (2, 4)
    verdict = agreement.verdict()
    assert gap in verdict and verdict.startswith("✔" if agrees else "✘")
    assert ("run Exercise 2's check cell" in verdict) is not agrees
    assert agreement.delta_m[1] == pytest.approx((0.015 * 4 * change.get("change_scale", 1), 0.06))
    results.summarize(comparison)
    out = capsys.readouterr().out
    assert "DoRA (your layer)" in out and "Your DoRALinear beside PEFT's DoRA, seed 0" in out and verdict in out


def test_without_your_layers_run_there_is_nothing_to_compare():
    assert results.layer_agreement(_records({"lora": [0.8], "dora": [0.85]})) is None


def _timed(accuracies: dict[str, list[float]], seconds: dict[str, float]):
    comparison = _records(accuracies)
    for run in comparison.runs:
        run.train_seconds, run.eval_seconds = seconds[run.method], 0.0
    return results.summarize(comparison, verbose=False)


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ({"full": 0.85, "lora": 0.8, "dora": 0.81, "fastest": "lora"}, ["0.850", "0.800", "predicted LoRA"]),
        ({"full": 85, "lora": 80, "dora": 81, "fastest": "LoRA"}, ["0.850", "0.800", "predicted LoRA"]),
        ({"full": ..., "lora": 0.8, "dora": None, "fastest": ...}, ["—", "0.800", "predicted —"]),
        ({"lora": "high", "fastest": "adapter"}, ["lora: 'high' is not an accuracy", "fastest='adapter' names no"]),
        (None, ["No prediction was written before the run"]),
        ([0.8, 0.8], ["prediction is a list, not a dict"]),
    ],
    ids=["fractions", "percentages-and-labels", "blanks", "unreadable", "none", "not-a-dict"],
)
def test_prediction_table_sets_the_prediction_beside_the_measured_results(prediction, expected):
    summary = _timed({"full": [0.9], "lora": [0.80, 0.84, 0.83], "dora": [0.81, 0.86, 0.83]},
                     {"full": 9.0, "lora": 2.0, "dora": 3.0})  # fmt: skip
    text = results.prediction_table(prediction, summary)
    for piece in expected:
        assert piece in text, text
    assert "measured LoRA (2 s per run)" in text and "0.823 ± 0.021" in text and "0.900 (1 seed)" in text
