"""The lab's benchmark (`dora-lab bench`): the solutions notebook's model answers beside PEFT's LoRA and DoRA."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.bench.loader import load_classes
from labhelpers.bench.records import BenchResult, BenchSettings
from labhelpers.bench.report import format_table, load_note
from labhelpers.bench.timing import compare
from labhelpers.config import resolve_device

SIZES = ((768, 768), (1024, 1024), (4096, 1024))
"""(out_features, in_features) of the layers the lab times: BERT-base's attention projections, a 1024-wide one,
and a 1024 -> 4096 MLP up-projection (non-square: nn.Linear's weight is (out, in))."""

TOKENS = (512, 2048)
"""Tokens per step (batch x sequence length) that the lab times."""

DROPOUTS = (0.0, 0.1)
"""lora_dropout values the lab times: none, and the lab's own (Exercise 4 trains with lora_dropout=0.1)."""

LAB_CLASSES = {"lab_dora": "DoRALinear", "lab_efficient": "EfficientDoRALinear"}
"""Table name -> class of the solutions notebook that the lab times: Exercise 2's answer and the bonus's."""


@dataclass(frozen=True)
class LabBenchOptions:
    """What `run_lab_bench` times, and where it writes the results.

    Attributes:
        out: write the results as JSON to this file (None: print only).
        solution: a notebook (.ipynb) or .py file defining the classes of LAB_CLASSES.
        sizes: (out_features, in_features) of each layer size.
        tokens, dropouts: the tokens per step and the lora_dropout values; every size is timed at each.
        r, lora_alpha: the adapter settings of every layer.
        repeats, warmup, threads, clock, input_requires_grad: how to time, as in BenchSettings.
    """

    out: Path | None = None
    solution: Path = SOURCE_NOTEBOOK
    sizes: tuple[tuple[int, int], ...] = SIZES
    tokens: tuple[int, ...] = TOKENS
    dropouts: tuple[float, ...] = DROPOUTS
    r: int = 8
    lora_alpha: float = 16.0
    repeats: int = 30
    warmup: int = 5
    threads: int = 2
    clock: str = "wall"
    input_requires_grad: bool = True

    def cases(self, device: torch.device) -> list[BenchSettings]:
        """Return the settings of each (size, tokens, dropout), sizes outermost, on `device`."""
        return [
            BenchSettings(
                in_features=in_features,
                out_features=out_features,
                tokens=tokens,
                lora_dropout=dropout,
                r=self.r,
                lora_alpha=self.lora_alpha,
                repeats=self.repeats,
                warmup=self.warmup,
                threads=self.threads,
                input_requires_grad=self.input_requires_grad,
                device=device,
                clock=self.clock,
            )
            for out_features, in_features in self.sizes
            for tokens in self.tokens
            for dropout in self.dropouts
        ]


def run_lab_bench(options: LabBenchOptions) -> list[BenchResult]:
    """Time LoRA, PEFT's DoRA and the lab's model answers at the lab's sizes; print a table and write JSON.

    Args:
        options: what to time and where to write it.

    Returns:
        The `compare` results, one per (size, tokens, dropout).
    """
    device = resolve_device()
    classes = load_classes(options.solution, list(LAB_CLASSES.values()))
    lab_layers = {name: classes[class_name] for name, class_name in LAB_CLASSES.items()}
    results = [compare(settings, lab_layers) for settings in options.cases(device)]
    where = f"{options.threads} CPU threads" if device.type == "cpu" else str(device)
    print(
        f"One training step (forward + backward) on {where}, r={options.r}, median {options.clock} time of "
        f"{options.repeats} interleaved rounds"
    )
    print(format_table(results))
    print(load_note(results))
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(json.dumps(bench_json(options, device, results), indent=1), encoding="utf-8")
        print(f"Wrote {options.out}")
    return results


def bench_json(options: LabBenchOptions, device: torch.device, results: list[BenchResult]) -> dict:
    """Return the contents of bench.json: the run's settings, then every result with each of its rounds."""
    return {
        "torch": torch.__version__,
        "device": str(device),
        "clock": options.clock,
        "r": options.r,
        "lora_alpha": options.lora_alpha,
        "dropouts": list(options.dropouts),
        "solution": str(options.solution),
        "results": [result.to_json() for result in results],
    }
