"""The class report's figures: matplotlib PNGs, returned as base64 for the page to embed.

Each function takes the report's records and returns the PNG's base64 text, or "" when there is nothing to draw.
Figures are drawn on matplotlib's Figure directly (no pyplot, no display), so the report can be written anywhere.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from labhelpers.grading.report.records import ClassReport, MistakeSummary, PhaseSummary, TestSummary

DPI = 100
PASS_COLOUR, FAIL_COLOUR, NOT_JUDGED_COLOUR = "#1a7f37", "#cf222e", "#8c959f"


def _png(figure) -> str:
    """Return the figure as base64 PNG text."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


def score_histogram(report: ClassReport) -> str:
    """Draw the histogram of the students' scores (one bin per point), with the mean and the maximum marked."""
    if not report.scores:
        return ""
    figure, ax = _figure(7, 3.2)
    top = max(report.max_score, max(report.scores.values()), 1.0)
    bins = [edge - 0.5 for edge in range(int(top) + 2)]
    ax.hist(list(report.scores.values()), bins=bins, color="#0969da", edgecolor="white")
    ax.axvline(report.mean_score, color="black", linestyle="--", label=f"mean {report.mean_score:g}")
    ax.axvline(report.max_score, color=PASS_COLOUR, linestyle=":", label=f"maximum {report.max_score:g}")
    ax.set_xlabel("score (after late penalties and overrides)")
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    return _png(figure)


def pass_rates(tests: Sequence[TestSummary]) -> str:
    """Draw, per test, how many students passed, failed and were not judged (stacked horizontal bars)."""
    if not tests:
        return ""
    figure, ax = _figure(7, 0.45 * len(tests) + 1.2)
    names = [f"{test.grade_id} (Ex. {test.exercise})" for test in tests][::-1]
    passed = [len(test.passed) for test in tests][::-1]
    failed = [len(test.failed) for test in tests][::-1]
    not_judged = [len(test.not_judged) for test in tests][::-1]
    ax.barh(names, passed, color=PASS_COLOUR, label="passed")
    ax.barh(names, failed, left=passed, color=FAIL_COLOUR, label="failed")
    ax.barh(names, not_judged, left=[p + f for p, f in zip(passed, failed)], color=NOT_JUDGED_COLOUR,
            label="not judged")  # fmt: skip
    for row, test in enumerate(tests[::-1]):
        rate = "—" if test.pass_rate is None else f"{100 * test.pass_rate:.0f} %"
        ax.annotate(rate, (passed[row] + failed[row] + not_judged[row], row), xytext=(4, 0),
                    textcoords="offset points", va="center")  # fmt: skip
    ax.set_xlim(0, max(1, len(tests[0].passed) + len(tests[0].failed) + len(tests[0].not_judged)) * 1.1)
    ax.set_xlabel("students (the label: pass rate among those judged)")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / len(tests)), ncol=3)
    return _png(figure)


def mistake_counts(mistakes: Sequence[MistakeSummary]) -> str:
    """Draw how many students made each named mistake (horizontal bars, most frequent on top)."""
    if not mistakes:
        return ""
    figure, ax = _figure(7, 0.45 * len(mistakes) + 1.0)
    ax.barh([m.name for m in mistakes][::-1], [m.count for m in mistakes][::-1], color=FAIL_COLOUR)
    ax.set_xlabel("students")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


def phase_times(phases: Sequence[PhaseSummary]) -> str:
    """Draw the spread of the workers' seconds per step and per submission (box plots over the submissions)."""
    if not phases:
        return ""
    figure, ax = _figure(7, 3.2)
    ax.boxplot([phase.seconds for phase in phases], orientation="horizontal", tick_labels=[p.phase for p in phases])
    ax.invert_yaxis()
    ax.set_xlabel("seconds per submission")
    return _png(figure)
