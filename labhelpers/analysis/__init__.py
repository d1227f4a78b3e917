"""Figure 2 of the paper: (ΔM, ΔD) of every adapted weight along training, its null baseline, and what they say.

- records.py: `DecompositionPoint` (one weight of one run at one checkpoint), `RowChanges` (its rows at the end),
  `Correlations`, and `Trajectory`, which holds them all, computes the statistics and reads/writes ex5_figure2.json;
- measure.py: `decomposition_trajectory` measures a comparison's weights (and draws the null baseline);
- findings.py: `figure2_findings` and the table, in words, from the measured numbers only.

Why a null baseline: for an update orthogonal to a row w, ||w + δ|| = ||w|| / cos θ, so ΔM grows with ΔD by geometry
alone (ΔM ≈ ||w||·ΔD; more for small updates, where the part of δ along the row dominates). Every point is therefore
drawn beside a null point: W0 plus a random update of the method's kind (rank r for LoRA/DoRA, dense for full
fine-tuning) scaled to the same ΔD, measured with the same measure. And a per-row test that this geometry does not
drive: Spearman over the rows of a matrix of 1 − cos_i against the excess magnitude e_i = ||W_i|| − ||W0_i|| / cos_i,
the change of length along the row divided by cos_i (0 when the update is orthogonal to the row). Its reference
points follow from the definition: a random additive update gives ρ near 0 (δ and −δ are equally likely, and flipping
δ flips e_i's sign but not 1 − cos_i); a turn that keeps every row's length (a DoRA whose magnitudes did not move)
gives e_i = −||W0_i||·(1 − cos_i)/cos_i, so ρ near −1.

ex5_figure2.json (every number in "summary" can be recomputed from the records saved beside it; nan is null):

    {"paper": {"source", "correlation": {method: r}},
     "points":          [{"method", "seed", "target", "layer", "checkpoint", "step", "delta_m", "delta_d"}, ...],
     "baseline_points": [{the same keys}, ...]  (one null point per point, at the point's ΔD),
     "row_changes":     [{"method", "seed", "target", "layer", "checkpoint" (the final one),
                          "one_minus_cos": [one per row], "excess": [e_i, one per row]}, ...]  (6 significant digits),
     "summary": {method: {target: {
         "pearson" | "spearman" | "slope" | "within_checkpoint": {"mean", "std", "seeds"},  (over seeds)
         "per_seed": [{"seed", "pearson", "spearman", "slope", "within_checkpoint"}, ...],  (of "points")
         "baseline": {"rank": r or null (dense), "seed": the null draws' seed,
                      the same four statistics and "per_seed", of "baseline_points"},
         "per_row": {"checkpoint", "spearman": {"mean", "std", "seeds"} (over seeds of each seed's mean over layers),
                     "per_seed": [{"seed", "spearman", "layers": [{"layer", "spearman"}, ...]}, ...]}}}}}
"""

from labhelpers.analysis.findings import figure2_findings, figure2_table, spread_text
from labhelpers.analysis.measure import decomposition_trajectory, null_point
from labhelpers.analysis.records import (
    FIGURE2_FILE,
    PAPER_FIGURE2,
    ROW_DIGITS,
    STATISTICS,
    Correlations,
    DecompositionPoint,
    RowChanges,
    Trajectory,
)

__all__ = [
    "FIGURE2_FILE",
    "PAPER_FIGURE2",
    "ROW_DIGITS",
    "STATISTICS",
    "Correlations",
    "DecompositionPoint",
    "RowChanges",
    "Trajectory",
    "decomposition_trajectory",
    "figure2_findings",
    "figure2_table",
    "null_point",
    "spread_text",
]
