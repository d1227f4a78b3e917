"""plots: every figure draws the data it is given, into a given ax when asked, and never calls plt.show()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from labhelpers import analysis, gradients, plots, training
from labhelpers.seeding import forked


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a plot function called plt.show()")

    monkeypatch.setattr(plt, "show", fail)
    yield
    plt.close("all")


def _comparison(seeds=(0, 1, 2), methods=("full", "lora", "dora")):
    """Records as training.run_comparison returns them: 2 layers × (query, value), 4 checkpoints, seeded noise."""
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    W0 = {
        f"bert.encoder.layer.{i}.attention.self.{p}": torch.randn(12, 20, generator=generator)
        for i in range(2)
        for p in ("query", "value")
    }
    runs = []
    for m, (method, level) in enumerate(zip(methods, (0.9, 0.85, 0.86))):
        for seed in seeds:
            checkpoints = [
                training.Checkpoint(
                    step=s,
                    epoch=s / 4,
                    train_loss=float(0.7 - 0.1 * s + 0.01 * rng.standard_normal()),
                    decomposition={},
                    weights={
                        k: v * (1 + 0.01 * s * (m + 1)) + 0.02 * s * torch.randn(12, 20, generator=generator)
                        for k, v in W0.items()
                    },
                )  # fmt: skip
                for s in (1, 2, 3, 4)
            ]
            runs.append(
                training.Run(
                    method,
                    seed,
                    1e-3,
                    [level + 0.01 * rng.standard_normal()],
                    [0.45],
                    checkpoints,
                    100,
                    1000,
                    1.0,
                    0.5,
                    None if method == "full" else {"r": 3},
                )  # fmt: skip
            )
    return training.Comparison(
        settings=training.Settings(methods=methods, seeds=seeds), runs=runs, n_train=64, n_eval=32, device="cpu",
        model="test", torch_threads=1, pretrained=W0,
    )  # fmt: skip


def test_loss_curves_draw_mean_and_band_per_method():
    comparison = _comparison()
    ax = plots.plot_loss_curves(comparison)
    lines = ax.get_lines()
    assert len(lines) == 3 and len(ax.collections) == 3  # one mean line and one ±std band per method
    lora = np.asarray([[c.train_loss for c in run.checkpoints] for run in comparison.runs_of("lora")])
    np.testing.assert_allclose(lines[1].get_ydata(), lora.mean(axis=0))
    np.testing.assert_allclose(lines[1].get_xdata(), [0.25, 0.5, 0.75, 1.0])


def test_loss_curves_have_no_band_for_one_seed():
    ax = plots.plot_loss_curves(_comparison(seeds=(0,)))
    assert len(ax.get_lines()) == 3 and len(ax.collections) == 0


def test_accuracy_bars_show_means_seed_dots_and_pairs():
    comparison = _comparison()
    ax = plots.plot_accuracy(comparison)
    heights = [patch.get_height() for patch in ax.patches]
    expected = [np.mean([r.val_accuracy for r in comparison.runs_of(m)]) for m in ("full", "lora", "dora")]
    np.testing.assert_allclose(heights, expected)
    dots = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert len(dots) == 3
    pairs = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]  # one grey line per seed
    assert len(pairs) == 3
    np.testing.assert_allclose(
        pairs[0].get_ydata(), [comparison.runs_of(m)[0].val_accuracy for m in ("full", "lora", "dora")]
    )


def test_comparison_figure_has_both_panels():
    fig = plots.plot_comparison(_comparison())
    assert len(fig.axes) == 2


def _scattered(ax, grey: bool) -> np.ndarray:
    """The (x, y) of every point drawn by scatter in an Axes: the null baseline's grey ones, or the others."""
    null = matplotlib.colors.to_rgba(plots.NULL_COLOR)
    found = [
        c.get_offsets()
        for c in ax.collections
        if isinstance(c, matplotlib.collections.PathCollection)
        and (tuple(c.get_facecolor()[0][:3]) == null[:3]) == grey
    ]
    return np.concatenate(found) if found else np.empty((0, 2))


def _lines(ax, color) -> list:
    return [line for line in ax.get_lines() if matplotlib.colors.same_color(line.get_color(), color)]


@pytest.mark.parametrize("method", ["full", "lora", "dora"])
def test_figure2_draws_every_point_and_a_line_per_seed(method):
    trajectory = analysis.decomposition_trajectory(_comparison())
    fig = plots.plot_figure2(trajectory, method)
    query, value = fig.axes
    for ax, target in ((query, "query"), (value, "value")):
        points = trajectory.select(method, target)
        offsets = _scattered(ax, grey=False)
        assert len(offsets) == len(points) == 3 * 2 * 4  # seeds × layers × checkpoints
        np.testing.assert_allclose(sorted(offsets[:, 0]), sorted(p.delta_d for p in points))
        np.testing.assert_allclose(sorted(offsets[:, 1]), sorted(p.delta_m for p in points))
        assert len(_lines(ax, "black")) == 3  # one least-squares line per seed
        mean, std, _ = trajectory.spread(method, target, "pearson")
        null_mean, null_std, _ = trajectory.spread(method, target, "pearson", baseline=True)
        assert f"r = {mean:+.2f} ± {std:.2f} (null {null_mean:+.2f} ± {null_std:.2f})" in ax.get_title()
        assert ax.get_xscale() == ax.get_yscale() == "log"
    assert f"paper {analysis.PAPER_FIGURE2['correlation'][method]:+.2f}" in query.get_title()
    assert "; paper" not in value.get_title()
    (legend,) = fig.legends  # one legend for both panels: layers, checkpoints, the fit, the null baseline
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 2 + 4 + 1 + 1
    assert texts[-1] == f"null: W0 + random {'dense' if method == 'full' else 'rank-3'} update of the same ΔD"


@pytest.mark.parametrize("method", ["full", "dora"])
def test_figure2_draws_the_null_baseline_in_grey_with_its_own_fit(method):
    trajectory = analysis.decomposition_trajectory(_comparison())
    ax = plots.plot_figure2(trajectory, method).axes[0]
    null = trajectory.select(method, "query", baseline=True)
    offsets = _scattered(ax, grey=True)
    assert len(offsets) == len(null) == 3 * 2 * 4
    np.testing.assert_allclose(sorted(offsets[:, 1]), sorted(p.delta_m for p in null))
    fits = _lines(ax, plots.NULL_COLOR)
    assert len(fits) == 3 and {line.get_linestyle() for line in fits} == {"--"}  # one dashed fit per seed
    for seed, line in zip(trajectory.seeds(method), fits):
        own = trajectory.select(method, "query", seed, baseline=True)
        x, y = line.get_data()
        expected = np.polyfit([p.delta_d for p in own], [p.delta_m for p in own], 1)[0]
        assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(expected, rel=1e-6)
    (strokes,) = [c for c in ax.collections if isinstance(c, matplotlib.collections.LineCollection)]
    for stroke in strokes.get_segments():  # each joins a point to its null point, at the same ΔD
        assert stroke[0][0] == pytest.approx(stroke[1][0], rel=1e-6)
    assert len(strokes.get_segments()) == len(null)
    null_slope = analysis.spread_text(*trajectory.spread(method, "query", "slope", baseline=True), "slope")
    assert f"(null {null_slope})" in ax.get_title()


def test_figure2_without_a_baseline_draws_the_trained_points_only():
    trajectory = analysis.decomposition_trajectory(_comparison(seeds=(0,)))
    bare = analysis.Trajectory(trajectory.points)
    fig = plots.plot_figure2(bare, "lora", log=False)
    ax = fig.axes[0]
    assert len(_scattered(ax, grey=True)) == 0 and len(ax.get_lines()) == 1
    assert ax.get_xscale() == "linear" and "null" not in ax.get_title()
    assert not any("null" in t.get_text() for t in fig.legends[0].get_texts())


def test_figure2_least_squares_line_is_the_seeds_fit():
    trajectory = analysis.decomposition_trajectory(_comparison(seeds=(0,)))
    ax = plots.plot_figure2(trajectory, "dora").axes[0]
    points = trajectory.select("dora", "query", 0)
    d, m = [p.delta_d for p in points], [p.delta_m for p in points]
    (line,) = _lines(ax, "black")
    x, y = line.get_data()
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(np.polyfit(d, m, 1)[0], rel=1e-6)
    assert x[0] == pytest.approx(min(d)) and x[-1] == pytest.approx(max(d))


def test_figure2_draws_into_given_axes_and_names_errors():
    trajectory = analysis.decomposition_trajectory(_comparison())
    fig, axes = plt.subplots(1, 2)
    assert plots.plot_figure2(trajectory, "lora", axes=axes) is fig
    with pytest.raises(ValueError, match="one Axes per target"):
        plots.plot_figure2(trajectory, "lora", axes=[axes[0]])
    with pytest.raises(ValueError, match="no points of method 'qlora'"):
        plots.plot_figure2(trajectory, "qlora")


def test_weight_changes_show_heatmaps_and_magnitudes_of_a_real_layer():
    comparison = _comparison()
    fig = plots.plot_weight_changes(comparison, rows=slice(0, 8), cols=slice(0, 10))
    images = [image for ax in fig.axes for image in ax.get_images()]
    assert len(images) == 4 and images[0].get_array().shape == (8, 10)  # pretrained, full, LoRA, DoRA
    layer = "bert.encoder.layer.1.attention.self.query"  # the default: the last layer's query
    final = comparison.runs_of("dora")[0].checkpoints[-1].weights[layer]
    np.testing.assert_allclose(
        images[3].get_array(), (final - comparison.pretrained[layer])[:8, :10].numpy(), rtol=1e-6
    )
    bars_ax = [ax for ax in fig.axes if ax.patches][0]
    assert len(bars_ax.patches) == 4 * 12  # four versions × 12 output features
    colours = [bars_ax.patches[12 * k].get_facecolor() for k in range(4)]
    expected = [matplotlib.colors.to_rgba(plots.COLORS[m]) for m in ("pretrained", "full", "lora", "dora")]
    assert colours == expected  # each method in its own colour


def test_magnitude_bars_are_row_norms():
    W = torch.randn(6, 9)
    ax = plots.plot_magnitudes({"pretrained": W})
    np.testing.assert_allclose(
        [p.get_height() for p in ax.patches], torch.linalg.vector_norm(W, dim=1).numpy(), rtol=1e-6
    )


def test_decomposition_figure_shows_magnitudes_unit_rows_and_a_random_baseline():
    W = torch.randn(40, 24, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.5, 3, 40)[:, None]
    norms = torch.linalg.vector_norm(W, dim=1, keepdim=True)
    fig = plots.plot_decomposition(W, norms, W / norms, rows=slice(4, 12), cols=slice(0, 10))
    weight, direction = (ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images())
    np.testing.assert_allclose(weight, W[4:12, :10].numpy(), rtol=1e-6)
    np.testing.assert_allclose(direction, (W / norms)[4:12, :10].numpy(), rtol=1e-6)
    bars = next(ax for ax in fig.axes if ax.patches)
    np.testing.assert_allclose([p.get_width() for p in bars.patches], norms[4:12, 0].numpy(), rtol=1e-6)
    bottom = next(ax for ax in fig.axes if len(ax.get_lines()) == 3)
    magnitude, random, unit = (line.get_ydata() for line in bottom.get_lines())
    np.testing.assert_allclose(magnitude, norms[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(unit, np.ones(40), rtol=1e-6)
    # The baseline: a matrix of W's shape whose entries have W's standard deviation, drawn from the given seed.
    with forked(0):
        expected = torch.randn(W.shape, dtype=torch.float64) * float(np.std(W.numpy(), dtype=np.float64))
    np.testing.assert_allclose(random, torch.linalg.vector_norm(expected, dim=1).numpy(), rtol=1e-6)


def test_gradient_norms_figure_has_one_panel_per_quantity():
    stats = gradients.GradientStats(
        layer="bert.encoder.layer.0.intermediate.dense", shape=(1536, 384), device="cpu", steps=[0, 1, 2],
        lora={"loss": [1.0, 0.5, 0.2], "lora_A": [0.0, 0.1, 0.2], "lora_B": [0.3, 0.2, 0.1]},
        dora={"loss": [1.0, 0.4, 0.1], "lora_A": [0.0, 0.1, 0.2], "lora_B": [0.3, 0.2, 0.1], "magnitude": [0.2, 0.1, 0.1]},
    )  # fmt: skip
    fig = plots.plot_gradient_norms(stats)
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 1, 2]
    assert "1536×384" in fig._suptitle.get_text()


def test_save_figure_writes_a_png(tmp_path):
    fig = plots.plot_comparison(_comparison())
    path = plots.save_figure(fig, "ex4_comparison", tmp_path / "new")
    assert path == tmp_path / "new" / "ex4_comparison.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_lab_figures_0_figures_are_built_but_neither_laid_out_nor_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_FIGURES", "0")
    laid_out = []
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout", lambda fig, **options: laid_out.append(fig))
    fig = plots.plot_comparison(_comparison())
    assert len(fig.axes) == 2 and laid_out == []
    assert plots.save_figure(fig, "ex4_comparison", tmp_path / "new") is None
    assert not (tmp_path / "new").exists()
    monkeypatch.setenv("LAB_FIGURES", "1")
    plots.plot_comparison(_comparison())
    assert len(laid_out) == 1


def test_plot_bench_draws_one_bar_per_layer_and_size():
    from labhelpers import bench
    from labhelpers.plots import plot_bench

    factories = bench.default_factories(bench.BenchSettings(12, 20, 8, r=2))
    results = [
        bench.time_layers(factories, bench.BenchSettings(12, 20, tokens, repeats=2, warmup=1, threads=1))
        for tokens in (8, 16)
    ]
    ax = plot_bench(results)
    assert len(ax.patches) == 2 * len(results[0].layers)
    lora_bars = [p.get_height() for p in ax.containers[0]]
    assert lora_bars == pytest.approx([1.0, 1.0])
    peak = plot_bench(results, metric="peak")
    assert peak.get_ylabel() == "peak MiB per step"
    with pytest.raises(ValueError, match="metric"):
        plot_bench(results, metric="speed")


def test_plot_bench_names_the_dropout_of_each_group():
    from labhelpers import bench
    from labhelpers.plots import plot_bench

    results = [
        bench.compare(bench.BenchSettings(12, 20, 8, r=2, lora_dropout=p, repeats=2, warmup=1, threads=1))
        for p in (0.0, 0.1)
    ]
    ax = plot_bench(results)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["20x12\n8 tok, dropout 0", "20x12\n8 tok, dropout 0.1"]
