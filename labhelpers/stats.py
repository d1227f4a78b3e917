"""Statistics of the lab's measurements: correlations, a least-squares slope, means over seeds, t intervals.

Plain numbers in, plain numbers out (float64 NumPy inside); nan where a statistic is undefined (one value, no spread).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


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
    """Return the 0-based ranks of some numbers; ties share the mean of their ranks."""
    values = np.asarray(list(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # the rank of the first of each run of equal values
    return (first + (counts - 1) / 2)[inverse.reshape(-1)]


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


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (ddof=1) of some numbers, e.g. one accuracy per seed.

    Args:
        values: (N,) numbers, N >= 1.

    Returns:
        (mean, std); std is 0 for a single value.
    """
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def t_interval(values: Iterable[float]) -> tuple[float, float, tuple[float, float]]:
    """Return the mean of some paired differences, its standard error and its 95 % Student-t interval.

    Args:
        values: (N,) numbers, e.g. one difference between two methods per seed.

    Returns:
        (mean, standard error = sample std / sqrt(N), (low, high)); the standard error and the interval are nan for
        a single value.
    """
    values = np.asarray(list(values), dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, (math.nan, math.nan)
    standard_error = float(values.std(ddof=1) / math.sqrt(values.size))
    half = t_quantile_95(values.size - 1) * standard_error
    return mean, standard_error, (mean - half, mean + half)
