"""stats: correlations and slope against NumPy and SciPy, the within-group correlation, t quantiles and intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labhelpers import stats


@pytest.mark.parametrize(
    "xs, ys",
    [
        ([1, 2, 3, 4], [2, 4, 5, 9]),
        ([0.1, -0.2, 0.5], [-1.0, 0.3, -2.0]),
        (list(range(10)), [x**2 for x in range(10)]),
    ],
    ids=["positive", "negative", "curved"],
)
def test_correlation_is_pearsons(xs, ys):
    assert stats.correlation(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-12)


@pytest.mark.parametrize("xs, ys", [([1, 1, 1], [1, 2, 3]), ([1], [2])], ids=["constant", "single-point"])
def test_correlation_is_nan_without_spread(xs, ys):
    assert math.isnan(stats.correlation(xs, ys))


@pytest.mark.parametrize(
    "xs, ys",
    [([1, 2, 2, 3, 5], [2, 1, 4, 4, 9]), ([0.3, -1.0, 2.0, 0.5], [1.0, 1.0, -3.0, 2.0]), (list(range(8)), [x**3 for x in range(8)]),
     ([round(math.sin(i), 1) for i in range(300)], [round(math.cos(3 * i), 2) for i in range(300)])],
    ids=["ties", "negative", "monotone", "many-ties"],
)  # fmt: skip
def test_spearman_and_slope_match_scipy(xs, ys):
    from scipy import stats as scipy_stats

    assert stats.spearman(xs, ys) == pytest.approx(scipy_stats.spearmanr(xs, ys).statistic, rel=1e-12)
    assert stats.slope(xs, ys) == pytest.approx(scipy_stats.linregress(xs, ys).slope, rel=1e-12)


def test_within_group_correlation_removes_the_shared_trend():
    # Two checkpoints; inside each, ΔM falls as ΔD rises, but both grow from the first checkpoint to the second.
    xs = [1.0, 2.0, 3.0, 11.0, 12.0, 13.0]
    ys = [3.0, 2.0, 1.0, 13.0, 12.0, 11.0]
    groups = [1, 1, 1, 2, 2, 2]
    assert stats.correlation(xs, ys) > 0.9
    assert stats.within_group_correlation(xs, ys, groups) == pytest.approx(-1.0)
    x, y = np.array(xs), np.array(ys)
    for g in (1, 2):
        members = np.array(groups) == g
        x[members] -= x[members].mean()
        y[members] -= y[members].mean()
    assert stats.within_group_correlation(xs, ys, groups) == pytest.approx(np.corrcoef(x, y)[0, 1])


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (2, 4.303), (9, 2.262), (10, 2.228), (40, 2.228)])
def test_t_quantile_matches_scipy_or_bounds_it(df, quantile):
    from scipy import stats as scipy_stats

    assert stats.t_quantile_95(df) == quantile
    assert (
        scipy_stats.t.ppf(0.975, df) == pytest.approx(quantile, abs=5e-4)
        if df <= 10
        else quantile > scipy_stats.t.ppf(0.975, df)
    )


@pytest.mark.parametrize(
    "values, mean, std",
    [([0.8, 0.84, 0.83], 0.8233333333333334, 0.020816659994661354), ([0.5], 0.5, 0.0)],
    ids=["three-seeds", "one-seed"],
)
def test_mean_std_is_the_mean_and_the_sample_standard_deviation(values, mean, std):
    assert stats.mean_std(values) == (pytest.approx(mean), pytest.approx(std))
    if len(values) > 1:
        assert stats.mean_std(values)[1] == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_t_interval_is_the_mean_plus_or_minus_t_times_the_standard_error():
    from scipy import stats as scipy_stats

    values = [0.01, 0.02, 0.0]
    mean, standard_error, (low, high) = stats.t_interval(values)
    assert mean == pytest.approx(0.01) and standard_error == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
    expected = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (low, high) == pytest.approx(expected, abs=1e-5)  # the table's 4.303 against SciPy's 4.3027


def test_t_interval_of_one_value_has_no_spread():
    mean, standard_error, interval = stats.t_interval([0.02])
    assert mean == 0.02 and math.isnan(standard_error) and all(math.isnan(v) for v in interval)
