"""Time one training step of LoRA, PEFT's DoRA and the lab's DoRALinear side by side, and report their peak memory.

Run ``python -m labhelpers.bench --out outputs/bench.json`` (or ``make bench``) for the lab's table, or in a notebook::

    from labhelpers import bench
    results = bench.time_layers(bench.default_factories(1024, 1024, lab_layer=DoRALinear), 1024, 1024, tokens=2048)
    print(bench.format_table([results]))
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from labhelpers.course import SOURCE_NOTEBOOK
from labhelpers.errors import LabError
from labhelpers.models import peft_layer

BASELINE = "lora"
"""Name of the entry every ratio is taken against."""

SIZES = ((768, 768), (1024, 1024), (4096, 1024))
"""(out_features, in_features) of the layers `main` times: BERT-base's attention projections, a 1024-wide one,
and a 1024 -> 4096 MLP up-projection (non-square: nn.Linear's weight is (out, in))."""

TOKENS = (512, 2048)
"""Tokens per step (batch x sequence length) that `main` times."""


def default_factories(
    in_features: int,
    out_features: int,
    r: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    lab_layer: Callable[..., nn.Module] | None = None,
    seed: int = 0,
) -> dict[str, Callable[[], nn.Module]]:
    """Return factories of the layers to compare, all wrapping copies of one seeded nn.Linear (with bias).

    Args:
        in_features, out_features: the base layer, weight (out_features, in_features).
        r, lora_alpha, lora_dropout: the adapter settings, the same for every layer.
        lab_layer: a class called as lab_layer(base_layer, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout),
            e.g. the notebook's DoRALinear; None leaves "lab_dora" out.
        seed: seeds the base layer's weights.

    Returns:
        {"lora": ..., "peft_dora": ..., "lab_dora": ...}: each a zero-argument callable building a fresh layer.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        base = nn.Linear(in_features, out_features)
    factories = {
        "lora": lambda: peft_layer(
            copy.deepcopy(base), use_dora=False, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout
        ),
        "peft_dora": lambda: peft_layer(
            copy.deepcopy(base), use_dora=True, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout
        ),
    }
    if lab_layer is not None:
        factories["lab_dora"] = lambda: lab_layer(
            copy.deepcopy(base), r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout
        )
    return factories


def _training_step(layer: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> None:
    """Run one forward and backward pass, with gradients cleared beforehand as zero_grad(set_to_none=True) does."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    # backward(grad_output) is the backward of loss = sum(out * grad_output): the dense gradient a layer gets
    # from the layers above it (out.sum() would hand every layer a broadcast tensor of ones instead).
    layer(x).backward(grad_output)


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null: the profiler's C++ side prints start/stop lines that no setting hides."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_step_bytes(layer: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> int:
    """Measure the peak CPU memory one training step allocates on top of what is live before it.

    torch.profiler with profile_memory=True records every allocation and free of the CPU allocator together
    with its running total of bytes allocated since profiling began; the peak of that total is the step's
    high-water mark: activations saved for backward, temporaries and gradients, but not the parameters or x.

    Args:
        layer: the layer, in the mode to measure.
        x: (tokens, in_features).
        grad_output: (tokens, out_features).

    Returns:
        Peak bytes.
    """
    from torch.profiler import ProfilerActivity, profile

    _training_step(layer, x, grad_output)  # allocate lazily created state outside the measurement
    layer.zero_grad(set_to_none=True)
    x.grad = None
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        layer(x).backward(grad_output)
    allocation = torch._C._profiler._EventType.Allocation
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.total_allocated))
    if not events:
        return 0
    events.sort()
    # The running total carries over from earlier profiles (a tensor allocated in one and freed outside it,
    # such as x.grad, is never subtracted), so count from the total just before this step's first allocation.
    _, first_size, first_total = events[0]
    return int(max(total for _, _, total in events) - (first_total - first_size))


def time_layers(
    factories: dict[str, Callable[[], nn.Module]],
    in_features: int,
    out_features: int,
    tokens: int,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 2,
    input_requires_grad: bool = True,
    seed: int = 0,
) -> dict:
    """Time one training step (forward + backward) of each layer, interleaved, and measure its peak memory.

    Rounds are round-robin over the layers, with the starting layer rotating from round to round, so that
    slow drifts of the machine (other processes, clock changes) hit every layer alike. Garbage collection
    is off while timing.

    Args:
        factories: name -> zero-argument callable building the layer; should include BASELINE ("lora").
        in_features, out_features: the layers' sizes; x is (tokens, in_features).
        tokens: rows of x (batch x sequence length).
        repeats: timed rounds; warmup: untimed rounds before them.
        threads: torch.set_num_threads during the measurement (restored afterwards).
        input_requires_grad: x needs a gradient, as for any layer above the first one in a network.
        seed: seeds x and the output gradient.

    Returns:
        A dict with the settings, "load_average" (the machine's 1-minute load before and after timing),
        "schedule" (layer names in the order the timed steps ran) and "layers":
        name -> {"times_s": per-round seconds, "median_s", "ratio" (median / the baseline's median, None without
        a baseline), "peak_bytes"}.
    """
    if not factories:
        raise LabError(
            "time_layers got no layers: pass a dict such as bench.default_factories(in_features, out_features)."
        )
    if repeats < 1 or warmup < 0:
        raise LabError(f"repeats={repeats}, warmup={warmup}: time at least one round (repeats >= 1, warmup >= 0).")
    names = list(factories)
    previous_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(tokens, in_features, generator=generator).requires_grad_(input_requires_grad)
        grad_output = torch.randn(tokens, out_features, generator=generator)
        layers = {name: factories[name]().train() for name in names}
        times: dict[str, list[float]] = {name: [] for name in names}
        schedule = []
        load_before = os.getloadavg()[0]
        gc.collect()
        gc.disable()
        for round_index in range(warmup + repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                _training_step(layers[name], x, grad_output)
                elapsed = time.perf_counter() - start
                if round_index >= warmup:
                    times[name].append(elapsed)
                    schedule.append(name)
        load_after = os.getloadavg()[0]
        if gc_was_enabled:
            gc.enable()
        peaks = {name: peak_step_bytes(layers[name], x, grad_output) for name in names}
    finally:
        torch.set_num_threads(previous_threads)
        if gc_was_enabled:
            gc.enable()
    medians = {name: statistics.median(times[name]) for name in names}
    baseline = medians.get(BASELINE)
    return {
        "in_features": in_features,
        "out_features": out_features,
        "tokens": tokens,
        "repeats": repeats,
        "warmup": warmup,
        "threads": threads,
        "input_requires_grad": input_requires_grad,
        "baseline": BASELINE if baseline is not None else None,
        # Other processes slow parallel (threads > 1) steps unevenly: above `threads`, ratios are not trustworthy.
        "load_average": [load_before, load_after],
        "schedule": schedule,
        "layers": {
            name: {
                "times_s": times[name],
                "median_s": medians[name],
                "ratio": None if baseline is None else medians[name] / baseline,
                "peak_bytes": peaks[name],
            }
            for name in names
        },
    }


def format_table(results: Sequence[dict]) -> str:
    """Return a plain-text table of `time_layers` results: one row per size and layer, ratios to LoRA.

    Args:
        results: dicts returned by `time_layers`.

    Returns:
        The table, one line per row.
    """
    header = (
        f"{'out x in':>11} {'tokens':>6}  {'layer':<10} {'median ms':>9} {'x lora':>6} {'peak MiB':>8} {'x lora':>6}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        layers = result["layers"]
        base_peak = layers[result["baseline"]]["peak_bytes"] if result["baseline"] else None
        for name, row in layers.items():
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
            peak_ratio = "" if not base_peak else f"{row['peak_bytes'] / base_peak:.2f}"
            size = f"{result['out_features']}x{result['in_features']}"
            lines.append(
                f"{size:>11} {result['tokens']:>6}  {name:<10} {row['median_s'] * 1e3:>9.2f} {ratio:>6} "
                f"{row['peak_bytes'] / 2**20:>8.1f} {peak_ratio:>6}"
            )
    return "\n".join(lines)


_CLASS_LINE = r"^class\s+{name}\b"


def load_class(path: str | Path, name: str = "DoRALinear") -> type:
    """Load a class from a notebook's code cell (the one defining it) or from a .py file, in a fresh namespace.

    The namespace starts with torch, nn (torch.nn) and F (torch.nn.functional), the imports the lab's
    notebook makes in its setup cell; nbgrader's ### BEGIN/END SOLUTION markers are comments and run as is.

    Args:
        path: a .ipynb notebook or a .py file.
        name: the class to find.

    Returns:
        The class.
    """
    import torch.nn.functional as F

    path = Path(path)
    if not path.is_file():
        raise LabError(
            f"{path} does not exist: pass the solutions notebook (solutions/dora/dora_lab.ipynb) or a .py file defining {name}."
        )
    pattern = re.compile(_CLASS_LINE.format(name=re.escape(name)), re.MULTILINE)
    if path.suffix == ".ipynb":
        import nbformat

        notebook = nbformat.read(path, as_version=4)
        cells = [cell.source for cell in notebook.cells if cell.cell_type == "code" and pattern.search(cell.source)]
        if not cells:
            raise LabError(f"No code cell of {path} defines `class {name}`: pass the notebook that defines it.")
        source = cells[-1]  # the last definition wins, as when the notebook runs top to bottom
    else:
        source = path.read_text(encoding="utf-8")
        if not pattern.search(source):
            raise LabError(f"{path} does not define `class {name}`: pass a file that does.")
    if "raise NotImplementedError" in source and "YOUR CODE HERE" in source:
        raise LabError(f"{path} holds the unsolved student version of {name}: pass a solved notebook or file.")
    namespace = {"__name__": f"labhelpers_bench_{name}", "torch": torch, "nn": nn, "F": F}
    try:
        exec(compile(source, str(path), "exec"), namespace)
    except Exception as exc:
        raise LabError(f"Running the code that defines {name} in {path} failed: {type(exc).__name__}: {exc}") from exc
    return namespace[name]


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Time LoRA, PEFT's DoRA and the lab's DoRALinear at the lab's sizes; print a table and write JSON.

    Args:
        argv: command-line arguments (default sys.argv[1:]); see --help.

    Returns:
        The `time_layers` results, one per (size, tokens).
    """
    parser = argparse.ArgumentParser(prog="python -m labhelpers.bench", description=main.__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--solution",
        type=Path,
        default=SOURCE_NOTEBOOK,
        help="notebook (.ipynb) or .py file defining DoRALinear (default: the solutions notebook)",
    )
    parser.add_argument("--sizes", nargs="+", default=[f"{o}x{i}" for o, i in SIZES], help="OUTxIN, e.g. 4096x1024")
    parser.add_argument("--tokens", nargs="+", type=int, default=list(TOKENS))
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-input-grad", action="store_true", help="x does not need a gradient (a first layer)")
    args = parser.parse_args(argv)

    sizes = []
    for text in args.sizes:
        match = re.fullmatch(r"(\d+)x(\d+)", text)
        if not match:
            parser.error(f"--sizes {text!r}: write OUTxIN, e.g. 4096x1024")
        sizes.append((int(match[1]), int(match[2])))
    lab_layer = load_class(args.solution)
    results = []
    for out_features, in_features in sizes:
        factories = default_factories(in_features, out_features, args.r, args.lora_alpha, args.lora_dropout, lab_layer)
        for tokens in args.tokens:
            results.append(
                time_layers(
                    factories,
                    in_features,
                    out_features,
                    tokens,
                    args.repeats,
                    args.warmup,
                    args.threads,
                    input_requires_grad=not args.no_input_grad,
                )
            )
    print(
        f"One training step (forward + backward), r={args.r}, {args.threads} threads, median of {args.repeats} interleaved rounds"
    )
    print(format_table(results))
    loads = [load for result in results for load in result["load_average"]]
    # The benchmark itself accounts for about `threads` of the load; more means other processes shared the cores.
    print(
        f"1-minute load average while timing: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores; "
        f"above {os.cpu_count()}, other processes competed for the cores and the ratios are inflated."
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "torch": torch.__version__,
            "r": args.r,
            "lora_alpha": args.lora_alpha,
            "lora_dropout": args.lora_dropout,
            "solution": str(args.solution),
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        print(f"Wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
