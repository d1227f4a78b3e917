"""Time one training step of LoRA, PEFT's DoRA and the lab's DoRA layers side by side, and report their peak memory.

Run ``dora-lab bench --out outputs/bench.json`` (or ``make bench``) for the lab's table, timing the model answers of
the solutions notebook (DoRALinear and the bonus EfficientDoRALinear), or in a notebook::

    from labhelpers import bench
    lab_layers, notes = bench.implemented_layers({"lab_dora": DoRALinear, "lab_efficient": EfficientDoRALinear})
    cases = [bench.BenchSettings(1024, 1024, tokens=2048, lora_dropout=p) for p in (0.0, 0.1)]
    results = [bench.compare(settings, lab_layers) for settings in cases]
    print(bench.format_table(results))

Layers run on ``get_config().device`` (``LAB_DEVICE``: CUDA when available, else the CPU).

Modules: records (settings and results), timing (the interleaved rounds, the layers compared), memory (a step's
peak memory), loader (classes from a notebook's cells), report (the table), lab (`dora-lab bench`) and
parallel_grading (`dora-lab bench-grading`, imported on its own: it needs the grader).
"""

from labhelpers.bench.lab import DROPOUTS, LAB_CLASSES, SIZES, TOKENS, LabBenchOptions, run_lab_bench
from labhelpers.bench.loader import load_classes
from labhelpers.bench.memory import peak_step_bytes
from labhelpers.bench.records import BenchResult, BenchSettings, LayerTiming
from labhelpers.bench.report import format_table, load_note
from labhelpers.bench.timing import BASELINE, CLOCKS, compare, default_factories, implemented_layers, time_layers

__all__ = [
    "BASELINE",
    "CLOCKS",
    "DROPOUTS",
    "LAB_CLASSES",
    "SIZES",
    "TOKENS",
    "BenchResult",
    "BenchSettings",
    "LabBenchOptions",
    "LayerTiming",
    "compare",
    "default_factories",
    "format_table",
    "implemented_layers",
    "load_classes",
    "load_note",
    "peak_step_bytes",
    "run_lab_bench",
    "time_layers",
]
