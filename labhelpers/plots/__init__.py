"""Every figure of the lab, one module per exercise. Each function takes data (and an optional ax), returns the
Figure or Axes, and never shows it.

- common.py: colours and names of the methods, new or given axes, `save_figure` and `lay_out` (both skipped when
  LAB_FIGURES=0);
- decomposition.py: Exercise 1, a real weight split into magnitudes and unit-row directions;
- gradients.py: Exercise 3's gradient norms, and the bonus's benchmark bars;
- comparison.py: Exercise 4, loss curves and accuracy;
- figure2.py: Exercise 5, the paper's Figure 2 with its null baseline;
- weights.py: Exercise 5, the trained weights themselves.
"""

from labhelpers.plots.common import CHECKPOINT_MARKERS, COLORS, LABELS, save_figure
from labhelpers.plots.comparison import plot_accuracy, plot_comparison, plot_loss_curves
from labhelpers.plots.decomposition import plot_decomposition
from labhelpers.plots.figure2 import NULL_COLOR, plot_figure2
from labhelpers.plots.gradients import plot_bench, plot_gradient_norms
from labhelpers.plots.weights import plot_magnitudes, plot_weight_changes, plot_weight_heatmaps

__all__ = [
    "CHECKPOINT_MARKERS",
    "COLORS",
    "LABELS",
    "NULL_COLOR",
    "plot_accuracy",
    "plot_bench",
    "plot_comparison",
    "plot_decomposition",
    "plot_figure2",
    "plot_gradient_norms",
    "plot_loss_curves",
    "plot_magnitudes",
    "plot_weight_changes",
    "plot_weight_heatmaps",
    "save_figure",
]
