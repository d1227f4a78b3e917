"""analysis: Figure 2's points from a comparison's checkpoints, their null baseline and per-row changes, their
statistics, ex5_figure2.json and the findings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from labhelpers import analysis, training
from labhelpers.weights import magnitude_direction_change, row_changes


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
            lora_config = None if method == "full" else {"r": 2}
            runs.append(training.Run(method, seed, 1e-3, [0.8], [0.5], kept, 10, 100, 1.0, 1.0, lora_config))
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
    assert len(trajectory.points) == 2 * 6  # two checkpoints × six matrices
    assert len(calls) == 2 * len(trajectory.points)  # each point and its null point
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
            assert entry["pearson"]["seeds"] == 3
            assert set(entry) == {*analysis.STATISTICS, "per_seed", "baseline", "per_row"}
            _recompute_baseline(saved, method, target)
            _recompute_per_row(saved, method, target)


def _recompute_baseline(saved, method, target):
    """The null baseline's statistics from its saved points: one null point per point, at the point's ΔD."""
    entry = saved["summary"][method][target]["baseline"]
    assert entry["rank"] == (None if method == "full" else 2) and entry["seed"] == 0
    keys = ("method", "seed", "target", "layer", "checkpoint", "step")
    points = {tuple(p[k] for k in keys): p for p in saved["points"] if (p["method"], p["target"]) == (method, target)}
    null = [p for p in saved["baseline_points"] if (p["method"], p["target"]) == (method, target)]
    assert sorted(tuple(p[k] for k in keys) for p in null) == sorted(points)
    for p in null:
        assert p["delta_d"] == pytest.approx(points[tuple(p[k] for k in keys)]["delta_d"], rel=1e-7)
    pearson = []
    for seed in (0, 1, 2):
        d, m = np.array([[p["delta_d"], p["delta_m"]] for p in null if p["seed"] == seed]).T
        mine = next(e for e in entry["per_seed"] if e["seed"] == seed)
        assert mine["pearson"] == pytest.approx(np.corrcoef(d, m)[0, 1])
        assert mine["slope"] == pytest.approx(np.polyfit(d, m, 1)[0])
        pearson.append(mine["pearson"])
    assert entry["pearson"]["mean"] == pytest.approx(np.mean(pearson))
    assert entry["slope"]["mean"] == pytest.approx(np.mean([e["slope"] for e in entry["per_seed"]]))


def _recompute_per_row(saved, method, target):
    """The per-row Spearman from the saved rows: per matrix, then the mean over layers, then over seeds."""
    from scipy.stats import spearmanr

    entry = saved["summary"][method][target]["per_row"]
    assert entry["checkpoint"] == 4
    seed_means = []
    for seed in (0, 1, 2):
        rows = [r for r in saved["row_changes"] if (r["method"], r["target"], r["seed"]) == (method, target, seed)]
        assert len(rows) == 3 and {r["checkpoint"] for r in rows} == {4} and all(len(r["excess"]) == 5 for r in rows)
        rho = {r["layer"]: spearmanr(r["one_minus_cos"], r["excess"]).statistic for r in rows}
        mine = next(e for e in entry["per_seed"] if e["seed"] == seed)
        assert {e["layer"]: e["spearman"] for e in mine["layers"]} == pytest.approx(rho)
        assert mine["spearman"] == pytest.approx(np.mean(list(rho.values())))
        seed_means.append(mine["spearman"])
    assert entry["spearman"]["mean"] == pytest.approx(np.mean(seed_means))
    assert entry["spearman"]["std"] == pytest.approx(np.std(seed_means, ddof=1))


def test_figure2_json_reads_back_into_the_same_trajectory(tmp_path):
    trajectory = analysis.decomposition_trajectory(_comparison(seeds=(0, 1)), null_seed=7)
    saved = json.loads(trajectory.write(tmp_path).read_text())
    again = analysis.Trajectory.from_json(saved)
    assert again.points == trajectory.points and again.baseline == trajectory.baseline
    assert again.rows == trajectory.rows and again.null_ranks == {"full": None, "lora": 2, "dora": 2}
    assert again.null_seed == 7
    assert json.dumps(again.to_json()) == json.dumps(saved)


def test_null_baseline_is_reproducible_and_drawn_with_each_methods_rank(monkeypatch):
    from labhelpers.analysis import measure

    ranks = []
    draw = measure.random_update_like

    def spy(W0, delta_d, rank, seed):
        ranks.append(rank)
        return draw(W0, delta_d, rank, seed)

    monkeypatch.setattr(measure, "random_update_like", spy)
    comparison = _comparison(seeds=(0,), checkpoints=2)
    first = analysis.decomposition_trajectory(comparison)
    assert ranks == [None] * 12 + [2] * 24  # full FT: dense; LoRA and DoRA: their adapters' rank
    assert analysis.decomposition_trajectory(comparison).baseline == first.baseline
    other = analysis.decomposition_trajectory(comparison, null_seed=1).baseline
    assert [p.delta_d for p in other] == pytest.approx([p.delta_d for p in first.baseline], rel=1e-7)
    assert [p.delta_m for p in other] != [p.delta_m for p in first.baseline]


def test_null_point_names_a_direction_change_no_update_reaches():
    point = analysis.DecompositionPoint("lora", 0, "query", 0, 1, 5, 0.1, math.nan)
    with pytest.raises(ValueError, match="no null update for"):
        analysis.null_point(next(iter(W0.values())), point, rank=2)


def test_per_row_changes_are_measured_at_the_final_checkpoint():
    comparison = _comparison(methods=("dora",), seeds=(1,), checkpoints=3)
    trajectory = analysis.decomposition_trajectory(comparison)
    assert len(trajectory.rows) == 6 and {r.checkpoint for r in trajectory.rows} == {3}
    name = "bert.encoder.layer.2.attention.self.value"
    one_minus_cos, excess = row_changes(W0[name], comparison.runs[0].checkpoints[-1].weights[name])
    rows = next(r for r in trajectory.rows if (r.layer, r.target) == (2, "value"))
    assert rows.one_minus_cos == pytest.approx(one_minus_cos.tolist(), rel=1e-5)
    assert rows.excess == pytest.approx(excess.tolist(), rel=1e-5)
    assert all(float(f"{v:.6g}") == v for v in rows.excess)  # kept (and saved) to 6 significant digits


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
        (
            {"full": [-1], "lora": [1, 1], "dora": [-1, -1]},
            "over the adapters' seeds: full FT ran one seed, whose own spread is not in this interval: no verdict.",
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
        "one-full-seed-no-verdict",
    ],
)
def test_figure2_findings_say_what_was_measured(signs, expected):
    text = "\n".join(analysis.figure2_findings(_trajectory_with_signs(signs), labels=training.LABELS))
    assert expected in text


def test_figure2_table_lists_every_method_and_target_with_its_null_row():
    trajectory = analysis.decomposition_trajectory(_comparison())
    lines = trajectory.table(training.LABELS).splitlines()
    rows = [line.split()[:2] for line in lines[1:13]]  # "full FT" splits into "full", "FT"
    assert rows == [[t, n] for t in ("query", "value") for m in ("full", "LoRA", "DoRA") for n in (m, "null")]
    assert "per-row ρ" in lines[0] and "-0.62" in lines[1]
    mean, std, _ = trajectory.row_spread("lora", "query")
    assert f"{mean:+.2f} ± {std:.2f}" in lines[3]
    null_mean, null_std, _ = trajectory.spread("lora", "query", "pearson", baseline=True)
    assert lines[4].split()[2:5] == [f"{null_mean:+.2f}", "±", f"{null_std:.2f}"]
    assert "LoRA rank-2" in "\n".join(lines[13:]) and "full FT dense" in "\n".join(lines[13:])


def test_figure2_findings_give_the_null_baseline_and_the_per_row_test():
    trajectory = analysis.decomposition_trajectory(_comparison())
    text = "\n".join(analysis.figure2_findings(trajectory, labels=training.LABELS))
    null_r = analysis.spread_text(*trajectory.spread("dora", "value", "pearson", baseline=True))
    null_slope = analysis.spread_text(*trajectory.spread("dora", "value", "slope", baseline=True), "slope")
    assert (
        f"null (rank-2 random updates with the same ΔD, nothing learned): Pearson {null_r}; slope of ΔM on ΔD {null_slope}"
        in text
    )
    assert "null (dense random updates" in text
    per_layer = trajectory.row_spearman("full", "query")
    assert f"L1 {np.mean([v[1] for v in per_layer.values()]):+.2f}" in text
    assert text.count("Spearman of 1 − cos_i and the excess magnitude e_i") == 6
