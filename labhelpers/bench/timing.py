"""Time one training step of each layer, interleaved round by round, and build the layers the lab compares."""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import torch
import torch.nn as nn

from labhelpers.bench.memory import peak_step_bytes, training_step
from labhelpers.bench.records import BenchResult, BenchSettings, LayerTiming
from labhelpers.config import resolve_device
from labhelpers.errors import LabError
from labhelpers.models import peft_layer
from labhelpers.seeding import forked

BASELINE = "lora"
"""Name of the entry every ratio is taken against."""

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""How a step is timed: "wall", the elapsed time (what a user waits); "cpu", the process's CPU time, which other
processes sharing the cores do not inflate (exact with threads=1: with more threads, waiting threads spin and
count)."""

Factories = dict[str, Callable[[], nn.Module]]
"""Table name -> zero-argument callable building a fresh layer."""


def default_factories(
    settings: BenchSettings, lab_layers: Mapping[str, Callable[..., nn.Module]] | None = None
) -> Factories:
    """Return factories of the layers to compare, all wrapping copies of one seeded nn.Linear (with bias).

    Args:
        settings: the base layer's size (weight (out_features, in_features)), the adapter settings (r, lora_alpha,
            lora_dropout, the same for every layer), the seed of the base layer's weights, and the device.
        lab_layers: table name -> class called as cls(base_layer, r=r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout), e.g. {"lab_dora": DoRALinear}; None for PEFT's layers only.

    Returns:
        {"lora": ..., "peft_dora": ..., **lab_layers}: each a zero-argument callable building a fresh layer.
    """
    device = resolve_device(settings.device)
    with forked(settings.seed):
        base = nn.Linear(settings.in_features, settings.out_features)  # drawn on the CPU: the same on every device
    base = base.to(device)
    adapter = dict(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout)
    factories = {
        "lora": lambda: peft_layer(copy.deepcopy(base), use_dora=False, **adapter),
        "peft_dora": lambda: peft_layer(copy.deepcopy(base), use_dora=True, **adapter),
    }
    for name, cls in (lab_layers or {}).items():
        # .to(device) also places what a lab layer creates without a device= argument.
        factories[name] = lambda cls=cls: cls(copy.deepcopy(base), **adapter).to(device)
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
            with forked():
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


def _checked_device(factories: Factories, settings: BenchSettings) -> torch.device:
    """Return the device to time on, after checking that the settings can be timed there."""
    if not factories:
        raise LabError(
            "time_layers got no layers: pass a dict such as "
            "bench.default_factories(BenchSettings(in_features, out_features, tokens))."
        )
    if settings.repeats < 1 or settings.warmup < 0:
        raise LabError(
            f"repeats={settings.repeats}, warmup={settings.warmup}: "
            "time at least one round (repeats >= 1, warmup >= 0)."
        )
    device = resolve_device(settings.device)
    if settings.clock not in CLOCKS:
        raise LabError(f"clock={settings.clock!r}: use one of {', '.join(CLOCKS)}.")
    if settings.clock == "cpu" and device.type != "cpu":
        raise LabError(
            f"clock='cpu' counts the CPU's work only, but the steps run on {device}: use the wall clock there."
        )
    return device


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run the block with torch.set_num_threads(count), restoring the previous count (and garbage collection)."""
    previous, gc_was_enabled = torch.get_num_threads(), gc.isenabled()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        if gc_was_enabled:
            gc.enable()


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA kernels run asynchronously, so a timer must wait for them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rounds(layers: dict[str, nn.Module], step: Callable[[nn.Module], None], settings: BenchSettings, device):
    """Run warmup + repeats rounds over the layers, the first layer rotating; return (times by name, schedule)."""
    timer, names = CLOCKS[settings.clock], list(layers)
    times: dict[str, list[float]] = {name: [] for name in names}
    schedule = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    for round_index in range(settings.warmup + settings.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            _synchronize(device)
            start = timer()
            step(layers[name])
            _synchronize(device)
            elapsed = timer() - start
            if round_index >= settings.warmup:
                times[name].append(elapsed)
                schedule.append(name)
    if gc_was_enabled:
        gc.enable()
    return times, schedule


def time_layers(factories: Factories, settings: BenchSettings) -> BenchResult:
    """Time one training step (forward + backward) of each layer, interleaved, and measure its peak memory.

    Rounds are round-robin over the layers, with the starting layer rotating from round to round, so that
    slow drifts of the machine (other processes, clock changes) hit every layer alike. Garbage collection
    is off while timing. On CUDA each step is timed from an idle GPU to its last kernel's end (synchronize).

    Args:
        factories: name -> zero-argument callable building the layer on the device; should include BASELINE ("lora").
        settings: the size (x is (tokens, in_features)), rounds, threads, clock, device and the seed of x and of
            the output gradient; its adapter settings are those the factories used, unknown here.

    Returns:
        The BenchResult, its settings' device the one the steps ran on.
    """
    device = _checked_device(factories, settings)
    with _threads(settings.threads):
        with forked(settings.seed):  # drawn on the CPU: the same x and gradient on every device
            x = torch.randn(settings.tokens, settings.in_features)
            grad_output = torch.randn(settings.tokens, settings.out_features)
        x = x.to(device).requires_grad_(settings.input_requires_grad)
        grad_output = grad_output.to(device)
        layers = {name: make().train() for name, make in factories.items()}
        load_before = os.getloadavg()[0]
        times, schedule = _rounds(layers, lambda layer: training_step(layer, x, grad_output), settings, device)
        load_after = os.getloadavg()[0]
        peaks = {name: peak_step_bytes(layer, x, grad_output) for name, layer in layers.items()}
    medians = {name: statistics.median(times[name]) for name in layers}
    baseline = medians.get(BASELINE)
    return BenchResult(
        settings=replace(settings, device=str(device)),
        baseline=BASELINE if baseline is not None else None,
        load_average=(load_before, load_after),
        schedule=schedule,
        layers={
            name: LayerTiming(
                times_s=times[name],
                median_s=medians[name],
                ratio=None if baseline is None else medians[name] / baseline,
                peak_bytes=peaks[name],
            )
            for name in layers
        },
    )


def compare(settings: BenchSettings, lab_layers: Mapping[str, Callable[..., nn.Module]] | None = None) -> BenchResult:
    """Time LoRA, PEFT's DoRA and the lab's layers at one size and dropout, all in train mode.

    Args:
        settings: the layer (weight (out_features, in_features)), x (tokens, in_features), the adapter settings of
            every layer, and how to time them, as in `time_layers`.
        lab_layers: table name -> class, as in `default_factories`.

    Returns:
        `time_layers`' result, built_from_settings (its JSON records r, lora_alpha and lora_dropout).
    """
    result = time_layers(default_factories(settings, lab_layers), settings)
    return replace(result, built_from_settings=True)
