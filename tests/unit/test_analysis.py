"""analysis: Figure 2's points from a comparison's checkpoints, their statistics, ex5_figure2.json and the findings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from labhelpers import analysis, training
from labhelpers.weights import magnitude_direction_change


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


W0 = {
    f"bert.encoder.layer.{i}.attention.self.{t}": _random((5, 7), 10 * i + k).float()
    for i in range(3)
    for k, t in enumerate(("query", "value"))
}


def _comparison(methods=("full", "lora", "dora"), seeds=(0, 1, 2), checkpoints=4):
    """Records as run_comparison returns them, with weights that drift away from W0 differently per seed."""
    runs = []
    for m, method in enumerate(methods):
        for seed in seeds:
            generator = torch.Generator().manual_seed(100 * m + seed)
            noise = {k: torch.randn(v.shape, generator=generator) for k, v in W0.items()}
            scale = {k: 1 + 0.05 * torch.rand(v.shape[0], 1, generator=generator) for k, v in W0.items()}
            kept = []
            for k in range(1, checkpoints + 1):
                weights = {name: W * scale[name] ** k + 0.01 * k * noise[name] for name, W in W0.items()}
                kept.append(training.Checkpoint(step=5 * k, epoch=k / checkpoints, train_loss=0.5, decomposition={},
                                                weights=weights))  # fmt: skip
            runs.append(training.Run(method, seed, 1e-3, [0.8], [0.5], kept, 10, 100, 1.0, 1.0, None))
    return training.Comparison(
        settings=training.Settings(methods=methods, seeds=seeds, checkpoints=checkpoints), runs=runs, n_train=20,
        n_eval=10, device="cpu", model="test", torch_threads=1, pretrained=W0,
    )  # fmt: skip


def test_decomposition_trajectory_applies_the_given_measure_to_every_checkpoint_and_layer():
    comparison = _comparison(methods=("lora",), seeds=(3,), checkpoints=2)
    calls = []

    def measure(W0_, W_):
        calls.append((W0_.shape, W_.shape))
        return magnitude_direction_change(W0_, W_)

    trajectory = analysis.decomposition_trajectory(comparison, measure=measure)
    assert len(calls) == len(trajectory.points) == 2 * 6  # two checkpoints × six matrices
    first = trajectory.points[0]
    assert (first.method, first.seed, first.layer, first.target, first.checkpoint, first.step) == (
        "lora",
        3,
        0,
        "query",
        1,
        5,
    )
    assert [p.checkpoint for p in trajectory.points] == [1] * 6 + [2] * 6
    name = "bert.encoder.layer.2.attention.self.value"
    expected = magnitude_direction_change(W0[name], comparison.runs[0].checkpoints[1].weights[name])
    assert (trajectory.points[-1].delta_m, trajectory.points[-1].delta_d) == pytest.approx(expected)
    assert trajectory.targets == ["query", "value"] and trajectory.seeds("lora") == [3]


def test_decomposition_trajectory_explains_missing_weights():
    comparison = _comparison()
    comparison.runs[0].checkpoints[0].weights = {}
    with pytest.raises(ValueError, match="keep_weights=True"):
        analysis.decomposition_trajectory(comparison)


def test_figure2_json_lets_anyone_recompute_every_number(tmp_path):
    trajectory = analysis.decomposition_trajectory(_comparison())
    path = trajectory.write(tmp_path)
    saved = json.loads(path.read_text())
    assert path.name == "ex5_figure2.json" and saved["paper"]["correlation"] == {
        "full": -0.62,
        "lora": 0.83,
        "dora": -0.31,
    }
    assert set(saved["points"][0]) >= {"method", "seed", "target", "layer", "checkpoint", "delta_m", "delta_d"}
    assert len(saved["points"]) == 3 * 3 * 4 * 6  # methods × seeds × checkpoints × matrices
    for method in ("full", "lora", "dora"):
        for target in ("query", "value"):
            entry = saved["summary"][method][target]
            per_seed = []
            for seed in (0, 1, 2):
                rows = [p for p in saved["points"] if (p["method"], p["target"], p["seed"]) == (method, target, seed)]
                d, m = np.array([p["delta_d"] for p in rows]), np.array([p["delta_m"] for p in rows])
                r = np.corrcoef(d, m)[0, 1]
                per_seed.append(r)
                mine = next(e for e in entry["per_seed"] if e["seed"] == seed)
                assert mine["pearson"] == pytest.approx(r)
                assert mine["slope"] == pytest.approx(np.polyfit(d, m, 1)[0])
            assert entry["pearson"]["mean"] == pytest.approx(np.mean(per_seed))
            assert entry["pearson"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert entry["pearson"]["seeds"] == 3 and set(entry) == {*analysis.STATISTICS, "per_seed"}


def test_one_seed_has_no_spread_and_writes_null(tmp_path):
    trajectory = analysis.decomposition_trajectory(_comparison(seeds=(0,)))
    assert math.isnan(trajectory.spread("dora", "query", "pearson")[1])
    saved = json.loads(trajectory.write(tmp_path).read_text())
    assert saved["summary"]["dora"]["query"]["pearson"]["std"] is None


def _trajectory_with_signs(signs: dict[str, list[float]]):
    """A trajectory whose per-seed query correlation has the given signs (ΔM = sign · ΔD + small noise)."""
    points = []
    for method, seed_signs in signs.items():
        for seed, sign in enumerate(seed_signs):
            for layer in range(3):
                for checkpoint in (1, 2):
                    d = 0.01 * (layer + 1) * checkpoint + 0.001 * seed
                    points.append(analysis.DecompositionPoint(method, seed, "query", layer, checkpoint, checkpoint,
                                                              0.5 + sign * d, d))  # fmt: skip
    return analysis.Trajectory(points)


@pytest.mark.parametrize(
    "signs, expected",
    [
        ({"dora": [-1, -1, -1]}, "DoRA: Pearson -1.00 ± 0.00 over 3 seeds (per seed -1.00, -1.00, -1.00)"),
        ({"dora": [-1, -1, -1]}, "the paper's sign in every seed"),
        ({"dora": [1, 1, 1]}, "this does not reproduce the paper's sign (no seed does)"),
        ({"dora": [1, -1, 1]}, "the sign differs between seeds"),
        ({"full": [1, 1], "lora": [1, 1], "dora": [-1, -1]}, "-2.00, -2.00 (seed by seed); mean -2.00"),
        ({"full": [1, 1], "lora": [1, 1], "dora": [-1, -1]}, "no: LoRA's is closer, at this scale"),
        ({"full": [-1, -1], "lora": [1, 1], "dora": [-1, -1]}, "[+2.00, +2.00]: yes, at this scale"),
        ({"full": [1, -1], "lora": [1, 1], "dora": [-1, -1]}, "these seeds cannot tell"),
        ({"full": [-1], "lora": [1], "dora": [-1]}, "one seed: no spread, so no verdict"),
        (
            {"full": [-1], "lora": [1, 1], "dora": [-1, -1]},
            "+2.00, +2.00 (seed by seed; full FT ran seed 0 only: its mean r is used for seed 1); mean +2.00",
        ),
    ],
    ids=[
        "spread",
        "same-sign",
        "opposite-sign",
        "mixed-sign",
        "gaps",
        "not-closer",
        "closer",
        "cannot-tell",
        "one-seed",
        "one-full-seed",
    ],
)
def test_figure2_findings_say_what_was_measured(signs, expected):
    text = "\n".join(analysis.figure2_findings(_trajectory_with_signs(signs), labels=training.LABELS))
    assert expected in text


def test_figure2_table_lists_every_method_and_target():
    table = analysis.decomposition_trajectory(_comparison()).table(training.LABELS)
    rows = [line.split()[0] for line in table.splitlines()[1:-1]]
    assert rows == ["query"] * 3 + ["value"] * 3 and "-0.62" in table
