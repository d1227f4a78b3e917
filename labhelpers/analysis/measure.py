"""Measure Figure 2 on a comparison's weights: every point, its null baseline, and the per-row changes at the end."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch

from labhelpers.analysis.records import DecompositionPoint, RowChanges, Trajectory
from labhelpers.weights import layer_and_target, magnitude_direction_change, random_update_like, row_changes

Measure = Callable[[torch.Tensor, torch.Tensor], tuple[float, float]]


def decomposition_trajectory(
    comparison, measure: Measure = magnitude_direction_change, null_seed: int = 0
) -> Trajectory:
    """Measure (ΔM, ΔD) of every adapted weight of every run at every checkpoint (the paper's Figure 2 points).

    Beside each point, the null baseline: W0 plus a random update of the method's kind (rank r = the run's LoRA rank
    for LoRA and DoRA, dense for full fine-tuning), scaled so that its ΔD is the point's, measured with the same
    measure. Nothing is learned in it, so its ΔM is what the row-norm geometry alone gives at that ΔD. And per matrix,
    at the final checkpoint, each row's 1 − cos_i and excess magnitude e_i (weights.row_changes).

    Args:
        comparison: a training.Comparison from run_comparison in this session (keep_weights=True), holding the
            pretrained weights and each checkpoint's merged weights.
        measure: `measure(W0, W) -> (delta_m, delta_d)`, e.g. your `magnitude_direction_change`.
        null_seed: seed of the null updates (each point's draw is seeded from it and the point's keys).

    Returns:
        A Trajectory with one point and one null point per (method, seed, checkpoint, layer), and the final
        checkpoint's per-row changes; the pretrained weights themselves (ΔM = ΔD = 0) are not a point.
    """
    pretrained = getattr(comparison, "pretrained", None)
    runs = getattr(comparison, "runs", None)
    if not pretrained or not runs or not all(c.weights for run in runs for c in run.checkpoints):
        raise ValueError(
            "these results hold no checkpoint weights: run training.run_comparison (with keep_weights=True) in this "
            "session; the weights are kept in memory, not in ex4_results.json"
        )
    trajectory = Trajectory([], null_seed=null_seed)
    for run in runs:
        rank = (run.lora_config or {}).get("r") if run.method != "full" else None
        trajectory.null_ranks[run.method] = rank
        for k, checkpoint in enumerate(run.checkpoints, start=1):
            for name, W in checkpoint.weights.items():
                layer, target = layer_and_target(name)
                delta_m, delta_d = measure(pretrained[name], W)
                point = DecompositionPoint(
                    run.method, run.seed, target, layer, k, checkpoint.step, float(delta_m), float(delta_d)
                )
                trajectory.points.append(point)
                trajectory.baseline.append(null_point(pretrained[name], point, rank, measure, null_seed))
                if k == len(run.checkpoints):
                    one_minus_cos, excess = row_changes(pretrained[name], W)
                    trajectory.rows.append(
                        RowChanges(run.method, run.seed, target, layer, k, one_minus_cos.tolist(), excess.tolist())
                    )
    return trajectory


def null_point(
    W0: torch.Tensor, point: DecompositionPoint, rank: int | None, measure: Measure = magnitude_direction_change,
    null_seed: int = 0,
) -> DecompositionPoint:  # fmt: skip
    """Return the null baseline of one Figure 2 point: W0 plus a random update with the point's ΔD, measured.

    Args:
        W0: (out_features, in_features), the pretrained weight of the point's matrix.
        point: the measured point (its ΔD is the one to reach).
        rank: of the random update B·A; None for a dense one.
        measure: the measure the point was measured with.
        null_seed: with the point's method, seed, target, layer and checkpoint, fixes the draw.

    Returns:
        A DecompositionPoint with the point's keys and the null update's (ΔM, ΔD).
    """
    key = f"{null_seed}:{point.method}:{point.seed}:{point.target}:{point.layer}:{point.checkpoint}"
    try:
        update = random_update_like(W0, point.delta_d, rank, seed=zlib.crc32(key.encode()))
    except ValueError as error:
        raise ValueError(f"no null update for {point}: {error}; is ΔD measured as mean(1 − cos) over rows?") from None
    W0 = W0.detach().to("cpu", torch.float64)
    delta_m, delta_d = measure(W0, W0 + update)
    return DecompositionPoint(
        point.method, point.seed, point.target, point.layer, point.checkpoint, point.step, float(delta_m),
        float(delta_d),
    )  # fmt: skip
