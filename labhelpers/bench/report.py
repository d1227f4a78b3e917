"""The benchmark's text: a table of results, and one sentence on the machine's load while they were timed."""

from __future__ import annotations

import os
from collections.abc import Sequence

from labhelpers.bench.records import BenchResult


def format_table(results: Sequence[BenchResult]) -> str:
    """Return a plain-text table of `compare` (or `time_layers`) results: one row per setting and layer.

    Args:
        results: the results (for a `time_layers` result, whose dropout is unknown, the column stays empty).

    Returns:
        The table, one line per row; ratios are to LoRA's median time and peak memory.
    """
    header = (
        f"{'out x in':>11} {'tokens':>6} {'dropout':>7}  {'layer':<13} {'median ms':>9} {'x lora':>6} "
        f"{'peak MiB':>8} {'x lora':>6}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        settings, layers = result.settings, result.layers
        base_peak = layers[result.baseline].peak_bytes if result.baseline else None
        dropout = "" if result.lora_dropout is None else f"{result.lora_dropout:g}"
        size = f"{settings.out_features}x{settings.in_features}"
        for name, row in layers.items():
            ratio = "" if row.ratio is None else f"{row.ratio:.3f}"
            peak_ratio = "" if not base_peak else f"{row.peak_bytes / base_peak:.2f}"
            lines.append(
                f"{size:>11} {settings.tokens:>6} {dropout:>7}  {name:<13} {row.median_s * 1e3:>9.2f} {ratio:>6} "
                f"{row.peak_bytes / 2**20:>8.1f} {peak_ratio:>6}"
            )
    return "\n".join(lines)


def load_note(results: Sequence[BenchResult]) -> str:
    """Return one sentence giving the machine's load while `results` were timed, and what it means for the ratios.

    Args:
        results: the results of `compare` or `time_layers`.

    Returns:
        The sentence.
    """
    loads = [load for result in results for load in result.load_average]
    cores = os.cpu_count()
    if {result.settings.clock for result in results} == {"cpu"}:
        effect = "CPU times are the process's own, which that inflates far less (caches and memory are still shared)"
    else:
        effect = "the ratios are inflated"
    # The benchmark itself accounts for about `threads` of the load; more means other processes shared the cores.
    return (
        f"1-minute load average while timing: {min(loads):.1f} to {max(loads):.1f} on {cores} cores; "
        f"above {cores}, other processes competed for the cores: {effect}."
    )
