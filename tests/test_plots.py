"""plots: every figure draws the data it is given, into a given ax when asked, and never calls plt.show()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labhelpers import analysis, plots


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a plot function called plt.show()")

    monkeypatch.setattr(plt, "show", fail)
    yield
    plt.close("all")


def _results(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    runs = []
    for method, level in (("lora", 0.85), ("dora", 0.86)):
        for seed in seeds:
            runs.append({
                "method": method, "seed": seed, "val_accuracy": level + 0.01 * rng.standard_normal(),
                "checkpoint_epoch": [0.5, 1.0, 1.5, 2.0], "checkpoint_train_loss": list(0.7 - 0.1 * np.arange(4) + 0.01 * rng.standard_normal(4)),
                "train_loss": [0.6, 0.45], "trainable_params": 100, "seconds": 1.0,
            })  # fmt: skip
    W0 = {
        f"bert.encoder.layer.{i}.attention.self.{p}": torch.randn(12, 20) for i in range(2) for p in ("query", "value")
    }
    checkpoints = {
        method: {"seed": 0, "checkpoints": [{"step": s, "epoch": s / 4, "weights": {k: v * (1 + 0.01 * s * (m + 1)) + 0.02 * s * torch.randn(12, 20) for k, v in W0.items()}} for s in (1, 2, 3, 4)]}
        for m, method in enumerate(("lora", "dora"))
    }  # fmt: skip
    return {"config": {}, "runs": runs, "weights": {"pretrained": W0, "checkpoints": checkpoints}}


def test_loss_curves_draw_mean_and_band_per_method():
    results = _results()
    ax = plots.plot_loss_curves(results)
    lines = ax.get_lines()
    assert len(lines) == 2 and len(ax.collections) == 2  # one mean line and one ±std band per method
    lora = np.asarray([r["checkpoint_train_loss"] for r in results["runs"] if r["method"] == "lora"])
    np.testing.assert_allclose(lines[0].get_ydata(), lora.mean(axis=0))


def test_loss_curves_have_no_band_for_one_seed():
    ax = plots.plot_loss_curves(_results(seeds=(0,)))
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 0


def test_accuracy_bars_show_means_and_seed_dots():
    results = _results()
    ax = plots.plot_accuracy(results)
    heights = [patch.get_height() for patch in ax.patches]
    expected = [np.mean([r["val_accuracy"] for r in results["runs"] if r["method"] == m]) for m in ("lora", "dora")]
    np.testing.assert_allclose(heights, expected)
    dots = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert len(dots) == 2


def test_comparison_figure_has_both_panels():
    fig = plots.plot_comparison(_results())
    assert len(fig.axes) == 2


def test_magnitude_direction_titles_carry_pearson_correlation():
    trajectory = analysis.decomposition_trajectory(_results())
    fig = plots.plot_magnitude_direction(trajectory)
    scatter_axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(scatter_axes) == 2
    for ax, method in zip(scatter_axes, ("lora", "dora")):
        assert f"{trajectory[method]['correlation']:+.2f}" in ax.get_title()
        np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], trajectory[method]["delta_d"])


def test_magnitude_direction_draws_into_given_axes():
    trajectory = analysis.decomposition_trajectory(_results())
    fig, axes = plt.subplots(1, 2)
    assert plots.plot_magnitude_direction(trajectory, axes=axes) is fig
    with pytest.raises(ValueError, match="one Axes per method"):
        plots.plot_magnitude_direction(trajectory, axes=[axes[0]])


def test_weight_changes_show_heatmaps_and_magnitudes_of_a_real_layer():
    results = _results()
    fig = plots.plot_weight_changes(results, rows=slice(0, 8), cols=slice(0, 10))
    images = [image for ax in fig.axes for image in ax.get_images()]
    assert len(images) == 3 and images[0].get_array().shape == (8, 10)
    final = results["weights"]["checkpoints"]["dora"]["checkpoints"][-1]["weights"][
        "bert.encoder.layer.1.attention.self.value"
    ]
    W0 = results["weights"]["pretrained"]["bert.encoder.layer.1.attention.self.value"]
    np.testing.assert_allclose(images[2].get_array(), (final - W0)[:8, :10].numpy(), rtol=1e-6)
    bars_ax = [ax for ax in fig.axes if ax.patches][0]
    assert len(bars_ax.patches) == 3 * 12  # three versions × 12 output features


def test_magnitude_bars_are_row_norms():
    W = torch.randn(6, 9)
    ax = plots.plot_magnitudes({"pretrained": W})
    np.testing.assert_allclose(
        [p.get_height() for p in ax.patches], torch.linalg.vector_norm(W, dim=1).numpy(), rtol=1e-6
    )


def test_gradient_norms_figure_has_one_panel_per_quantity():
    stats = {
        "layer": "bert.encoder.layer.0.intermediate.dense", "shape": (1536, 384), "steps": [0, 1, 2],
        "lora": {"loss": [1.0, 0.5, 0.2], "lora_A": [0.0, 0.1, 0.2], "lora_B": [0.3, 0.2, 0.1]},
        "dora": {"loss": [1.0, 0.4, 0.1], "lora_A": [0.0, 0.1, 0.2], "lora_B": [0.3, 0.2, 0.1], "magnitude": [0.2, 0.1, 0.1]},
    }  # fmt: skip
    fig = plots.plot_gradient_norms(stats)
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 1, 2]
    assert "1536×384" in fig._suptitle.get_text()


def test_save_figure_writes_a_png(tmp_path):
    fig = plots.plot_comparison(_results())
    path = plots.save_figure(fig, "ex4_comparison", tmp_path / "new")
    assert path == tmp_path / "new" / "ex4_comparison.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_bench_draws_one_bar_per_layer_and_size():
    from labhelpers import bench
    from labhelpers.plots import plot_bench

    results = [
        bench.time_layers(bench.default_factories(12, 20, r=2), 12, 20, tokens=8, repeats=2, warmup=1, threads=1),
        bench.time_layers(bench.default_factories(12, 20, r=2), 12, 20, tokens=16, repeats=2, warmup=1, threads=1),
    ]
    ax = plot_bench(results)
    assert len(ax.patches) == 2 * len(results[0]["layers"])
    lora_bars = [p.get_height() for p in ax.containers[0]]
    assert lora_bars == pytest.approx([1.0, 1.0])
    peak = plot_bench(results, metric="peak")
    assert peak.get_ylabel() == "peak MiB per step"
    with pytest.raises(ValueError, match="metric"):
        plot_bench(results, metric="speed")
