"""Time one training step of LoRA, PEFT's DoRA and the lab's DoRA layers side by side, and report their peak memory.

Run ``python -m labhelpers.bench --out outputs/bench.json`` (or ``make bench``) for the lab's table, timing the model
answers of the solutions notebook (DoRALinear and the bonus EfficientDoRALinear), or in a notebook::

    from labhelpers import bench
    lab_layers, notes = bench.implemented_layers({"lab_dora": DoRALinear, "lab_efficient": EfficientDoRALinear})
    results = [bench.compare(1024, 1024, tokens=2048, lora_dropout=p, lab_layers=lab_layers) for p in (0.0, 0.1)]
    print(bench.format_table(results))

Layers run on ``get_config().device`` (``LAB_DEVICE``: CUDA when available, else the CPU).
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from labhelpers.config import get_config
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

DROPOUTS = (0.0, 0.1)
"""lora_dropout values `main` times: none, and the lab's own (Exercise 4 trains with lora_dropout=0.1)."""

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""How a step is timed: "wall", the elapsed time (what a user waits); "cpu", the process's CPU time, which other
processes sharing the cores do not inflate (exact with threads=1: with more threads, waiting threads spin and count)."""

LAB_CLASSES = {"lab_dora": "DoRALinear", "lab_efficient": "EfficientDoRALinear"}
"""Table name -> class of the solutions notebook that `main` times: Exercise 2's answer and the bonus's."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to time on: `device`, else get_config().device (LAB_DEVICE), checked to be usable.

    Args:
        device: "cpu", "cuda", "cuda:N", a torch.device, or None for the lab's setting.

    Returns:
        The torch.device. Raises LabError when it names a GPU that PyTorch cannot see.
    """
    device = torch.device(device if device is not None else get_config().device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LabError(
            f"The benchmark was asked to run on {device} (LAB_DEVICE), but PyTorch sees no CUDA GPU: "
            "set LAB_DEVICE=cpu, or run on a machine with a GPU and a CUDA build of torch."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise LabError(
            f"The benchmark was asked to run on {device} (LAB_DEVICE), but PyTorch sees "
            f"{torch.cuda.device_count()} GPU(s): use cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    return device


def default_factories(
    in_features: int,
    out_features: int,
    r: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    lab_layers: Mapping[str, Callable[..., nn.Module]] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, Callable[[], nn.Module]]:
    """Return factories of the layers to compare, all wrapping copies of one seeded nn.Linear (with bias).

    Args:
        in_features, out_features: the base layer, weight (out_features, in_features).
        r, lora_alpha, lora_dropout: the adapter settings, the same for every layer.
        lab_layers: table name -> class called as cls(base_layer, r=r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout), e.g. {"lab_dora": DoRALinear}; None for PEFT's layers only.
        seed: seeds the base layer's weights.
        device: where the layers live (None: get_config().device).

    Returns:
        {"lora": ..., "peft_dora": ..., **lab_layers}: each a zero-argument callable building a fresh layer.
    """
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = nn.Linear(in_features, out_features)  # drawn on the CPU: the same weights on every device
    base = base.to(device)
    settings = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
    factories = {
        "lora": lambda: peft_layer(copy.deepcopy(base), use_dora=False, **settings),
        "peft_dora": lambda: peft_layer(copy.deepcopy(base), use_dora=True, **settings),
    }
    for name, cls in (lab_layers or {}).items():
        # .to(device) also places what a lab layer creates without a device= argument.
        factories[name] = lambda cls=cls: cls(copy.deepcopy(base), **settings).to(device)
    return factories


def implemented_layers(classes: Mapping[str, Callable[..., nn.Module]]) -> tuple[dict, list[str]]:
    """Split lab layer classes into those that run and those still unfinished, to time only the first.

    Each class is tried on a tiny layer (nn.Linear(4, 3), r=2, dropout 0.1) for one training step on the CPU,
    with the random state restored afterwards.

    Args:
        classes: table name -> class, e.g. {"lab_dora": DoRALinear, "lab_efficient": EfficientDoRALinear}.

    Returns:
        (usable, notes): the classes that ran, by name, and one sentence per class left out saying why.
    """
    usable, notes = {}, []
    for name, cls in classes.items():
        label = getattr(cls, "__name__", name)
        try:
            with torch.random.fork_rng(devices=[]):
                layer = cls(nn.Linear(4, 3), r=2, lora_alpha=4.0, lora_dropout=0.1).train()
                layer(torch.randn(2, 4)).sum().backward()
        except NotImplementedError:
            notes.append(f"{label} is not implemented yet: it is left out of the timing.")
        except Exception as exc:  # a student's layer can fail in any way; the notebook goes on without it
            notes.append(
                f"{label} failed on a small input ({type(exc).__name__}: {exc}): it is left out of the timing; "
                "run its check cell to see what to fix."
            )
        else:
            usable[name] = cls
    return usable, notes


def _training_step(layer: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> None:
    """Run one forward and backward pass, with gradients cleared beforehand as zero_grad(set_to_none=True) does."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    # backward(grad_output) is the backward of loss = sum(out * grad_output): the dense gradient a layer gets
    # from the layers above it (out.sum() would hand every layer a broadcast tensor of ones instead).
    layer(x).backward(grad_output)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA kernels run asynchronously, so a timer must wait for them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    """Measure the peak memory one training step allocates on x's device on top of what is live before it.

    On the CPU, torch.profiler with profile_memory=True records every allocation and free of the CPU allocator
    together with its running total of bytes allocated since profiling began; the peak of that total is the step's
    high-water mark: activations saved for backward, temporaries and gradients, but not the parameters or x.
    On CUDA, the caching allocator's own peak counter (torch.cuda.max_memory_allocated) gives the same quantity.

    Args:
        layer: the layer, in the mode to measure, on x's device.
        x: (tokens, in_features).
        grad_output: (tokens, out_features).

    Returns:
        Peak bytes.
    """
    _training_step(layer, x, grad_output)  # allocate lazily created state outside the measurement
    layer.zero_grad(set_to_none=True)
    x.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        layer(x).backward(grad_output)
        torch.cuda.synchronize(x.device)
        return int(torch.cuda.max_memory_allocated(x.device) - before)

    from torch.profiler import ProfilerActivity, profile

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
    device: str | torch.device | None = None,
    clock: str = "wall",
) -> dict:
    """Time one training step (forward + backward) of each layer, interleaved, and measure its peak memory.

    Rounds are round-robin over the layers, with the starting layer rotating from round to round, so that
    slow drifts of the machine (other processes, clock changes) hit every layer alike. Garbage collection
    is off while timing. On CUDA each step is timed from an idle GPU to its last kernel's end (synchronize).

    Args:
        factories: name -> zero-argument callable building the layer on `device`; should include BASELINE ("lora").
        in_features, out_features: the layers' sizes; x is (tokens, in_features).
        tokens: rows of x (batch x sequence length).
        repeats: timed rounds; warmup: untimed rounds before them.
        threads: torch.set_num_threads during the measurement (restored afterwards); CPU work only.
        input_requires_grad: x needs a gradient, as for any layer above the first one in a network.
        seed: seeds x and the output gradient.
        device: where x lives and the steps run (None: get_config().device).
        clock: "wall" or "cpu", see CLOCKS; "cpu" only on the CPU.

    Returns:
        A dict with the settings, "device", "clock", "load_average" (the machine's 1-minute load before and after timing),
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
    device = resolve_device(device)
    if clock not in CLOCKS:
        raise LabError(f"clock={clock!r}: use one of {', '.join(CLOCKS)}.")
    if clock == "cpu" and device.type != "cpu":
        raise LabError(
            f"clock='cpu' counts the CPU's work only, but the steps run on {device}: use the wall clock there."
        )
    timer = CLOCKS[clock]
    names = list(factories)
    previous_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(tokens, in_features, generator=generator).to(device).requires_grad_(input_requires_grad)
        grad_output = torch.randn(tokens, out_features, generator=generator).to(device)
        layers = {name: factories[name]().train() for name in names}
        times: dict[str, list[float]] = {name: [] for name in names}
        schedule = []
        load_before = os.getloadavg()[0]
        gc.collect()
        gc.disable()
        for round_index in range(warmup + repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                _synchronize(device)
                start = timer()
                _training_step(layers[name], x, grad_output)
                _synchronize(device)
                elapsed = timer() - start
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
        "device": str(device),
        "clock": clock,
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


def compare(
    in_features: int,
    out_features: int,
    tokens: int,
    lora_dropout: float = 0.0,
    lab_layers: Mapping[str, Callable[..., nn.Module]] | None = None,
    r: int = 8,
    lora_alpha: float = 16.0,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 2,
    input_requires_grad: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    clock: str = "wall",
) -> dict:
    """Time LoRA, PEFT's DoRA and the lab's layers at one size and dropout, all in train mode.

    Args:
        in_features, out_features, tokens: the layer, weight (out_features, in_features), and x (tokens, in_features).
        lora_dropout, r, lora_alpha: the adapter settings of every layer.
        lab_layers: table name -> class, as in `default_factories`.
        repeats, warmup, threads, input_requires_grad, seed, device, clock: as in `time_layers`.

    Returns:
        `time_layers`' result with "r", "lora_alpha" and "lora_dropout" added.
    """
    factories = default_factories(in_features, out_features, r, lora_alpha, lora_dropout, lab_layers, seed, device)
    result = time_layers(
        factories,
        in_features,
        out_features,
        tokens,
        repeats,
        warmup,
        threads,
        input_requires_grad,
        seed,
        device,
        clock,
    )
    return {**result, "r": r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout}


def format_table(results: Sequence[dict]) -> str:
    """Return a plain-text table of `compare` (or `time_layers`) results: one row per setting and layer.

    Args:
        results: dicts returned by `compare` or `time_layers` (without "lora_dropout", its column stays empty).

    Returns:
        The table, one line per row; ratios are to LoRA's median time and peak memory.
    """
    header = (
        f"{'out x in':>11} {'tokens':>6} {'dropout':>7}  {'layer':<13} {'median ms':>9} {'x lora':>6} "
        f"{'peak MiB':>8} {'x lora':>6}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        layers = result["layers"]
        base_peak = layers[result["baseline"]]["peak_bytes"] if result["baseline"] else None
        dropout = f"{result['lora_dropout']:g}" if "lora_dropout" in result else ""
        for name, row in layers.items():
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
            peak_ratio = "" if not base_peak else f"{row['peak_bytes'] / base_peak:.2f}"
            size = f"{result['out_features']}x{result['in_features']}"
            lines.append(
                f"{size:>11} {result['tokens']:>6} {dropout:>7}  {name:<13} {row['median_s'] * 1e3:>9.2f} {ratio:>6} "
                f"{row['peak_bytes'] / 2**20:>8.1f} {peak_ratio:>6}"
            )
    return "\n".join(lines)


def load_note(results: Sequence[dict]) -> str:
    """Return one sentence giving the machine's load while `results` were timed, and what it means for the ratios.

    Args:
        results: dicts returned by `compare` or `time_layers`.

    Returns:
        The sentence.
    """
    loads = [load for result in results for load in result["load_average"]]
    cores = os.cpu_count()
    if {result.get("clock", "wall") for result in results} == {"cpu"}:
        effect = "CPU times are the process's own, which that inflates far less (caches and memory are still shared)"
    else:
        effect = "the ratios are inflated"
    # The benchmark itself accounts for about `threads` of the load; more means other processes shared the cores.
    return (
        f"1-minute load average while timing: {min(loads):.1f} to {max(loads):.1f} on {cores} cores; "
        f"above {cores}, other processes competed for the cores: {effect}."
    )


def _class_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^class\s+{re.escape(name)}\b", re.MULTILINE)


def load_classes(path: str | Path, names: Sequence[str] = ("DoRALinear",)) -> dict[str, type]:
    """Load classes from a notebook's code cells (those defining them) or from a .py file, in one fresh namespace.

    The namespace starts with torch, nn (torch.nn) and F (torch.nn.functional), the imports the lab's
    notebook makes in its setup cell. Notebook cells run in notebook order, so that a class can build on an
    earlier one (EfficientDoRALinear subclasses DoRALinear); nbgrader's ### BEGIN/END SOLUTION markers are
    comments and run as is.

    Args:
        path: a .ipynb notebook or a .py file.
        names: the classes to find.

    Returns:
        name -> class, for each of `names`.
    """
    import torch.nn.functional as F

    path = Path(path)
    wanted = ", ".join(names)
    if not path.is_file():
        raise LabError(
            f"{path} does not exist: pass the solutions notebook (solutions/dora/dora_lab.ipynb) or a .py file "
            f"defining {wanted}."
        )
    if path.suffix == ".ipynb":
        import nbformat

        notebook = nbformat.read(path, as_version=4)
        code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        chosen = set()
        for name in names:
            defining = [i for i, source in enumerate(code) if _class_pattern(name).search(source)]
            if not defining:
                raise LabError(f"No code cell of {path} defines `class {name}`: pass the notebook that defines it.")
            chosen.add(defining[-1])  # the last definition wins, as when the notebook runs top to bottom
        sources = [code[i] for i in sorted(chosen)]
    else:
        sources = [path.read_text(encoding="utf-8")]
        for name in names:
            if not _class_pattern(name).search(sources[0]):
                raise LabError(f"{path} does not define `class {name}`: pass a file that does.")
    for source in sources:
        if "raise NotImplementedError" in source and "YOUR CODE HERE" in source:
            raise LabError(f"{path} holds the unsolved student version of {wanted}: pass a solved notebook or file.")
    namespace = {"__name__": "labhelpers_bench_solution", "torch": torch, "nn": nn, "F": F}
    for source in sources:
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except Exception as exc:
            raise LabError(
                f"Running the code that defines {wanted} in {path} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return {name: namespace[name] for name in names}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Time LoRA, PEFT's DoRA and the lab's model answers at the lab's sizes; print a table and write JSON.

    Args:
        argv: command-line arguments (default sys.argv[1:]); see --help.

    Returns:
        The `compare` results, one per (size, tokens, dropout).
    """
    parser = argparse.ArgumentParser(prog="python -m labhelpers.bench", description=main.__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--solution",
        type=Path,
        default=SOURCE_NOTEBOOK,
        help="notebook (.ipynb) or .py file defining DoRALinear and EfficientDoRALinear "
        "(default: the solutions notebook)",
    )
    parser.add_argument("--sizes", nargs="+", default=[f"{o}x{i}" for o, i in SIZES], help="OUTxIN, e.g. 4096x1024")
    parser.add_argument("--tokens", nargs="+", type=int, default=list(TOKENS))
    parser.add_argument("--dropouts", nargs="+", type=float, default=list(DROPOUTS), help="lora_dropout values")
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads while timing")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: the process's CPU time, not inflated by other processes on a shared "
        "machine (CPU only; use with --threads 1)",
    )
    parser.add_argument("--no-input-grad", action="store_true", help="x does not need a gradient (a first layer)")
    args = parser.parse_args(argv)

    sizes = []
    for text in args.sizes:
        match = re.fullmatch(r"(\d+)x(\d+)", text)
        if not match:
            parser.error(f"--sizes {text!r}: write OUTxIN, e.g. 4096x1024")
        sizes.append((int(match[1]), int(match[2])))
    for dropout in args.dropouts:
        if not 0 <= dropout < 1:
            parser.error(f"--dropouts {dropout:g}: a dropout probability is in [0, 1)")
    device = resolve_device()
    classes = load_classes(args.solution, list(LAB_CLASSES.values()))
    lab_layers = {name: classes[class_name] for name, class_name in LAB_CLASSES.items()}
    results = [
        compare(
            in_features,
            out_features,
            tokens,
            lora_dropout=dropout,
            lab_layers=lab_layers,
            r=args.r,
            lora_alpha=args.lora_alpha,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            input_requires_grad=not args.no_input_grad,
            device=device,
            clock=args.clock,
        )
        for out_features, in_features in sizes
        for tokens in args.tokens
        for dropout in args.dropouts
    ]
    where = f"{args.threads} CPU threads" if device.type == "cpu" else str(device)
    print(
        f"One training step (forward + backward) on {where}, r={args.r}, median {args.clock} time of "
        f"{args.repeats} interleaved rounds"
    )
    print(format_table(results))
    print(load_note(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "torch": torch.__version__,
            "device": str(device),
            "clock": args.clock,
            "r": args.r,
            "lora_alpha": args.lora_alpha,
            "dropouts": args.dropouts,
            "solution": str(args.solution),
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        print(f"Wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
