"""The peak memory of one training step: CUDA's allocator counter, or the CPU profiler's allocation events."""

from __future__ import annotations

import contextlib
import os
import sys

import torch
import torch.nn as nn


def training_step(layer: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> None:
    """Run one forward and backward pass, with gradients cleared beforehand as zero_grad(set_to_none=True) does.

    Args:
        layer: the layer, on x's device.
        x: (tokens, in_features).
        grad_output: (tokens, out_features).
    """
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
    training_step(layer, x, grad_output)  # allocate lazily created state outside the measurement
    layer.zero_grad(set_to_none=True)
    x.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        layer(x).backward(grad_output)
        torch.cuda.synchronize(x.device)
        return int(torch.cuda.max_memory_allocated(x.device) - before)
    return _cpu_peak_bytes(layer, x, grad_output)


def _cpu_peak_bytes(layer: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> int:
    """Return the CPU allocator's high-water mark during one forward and backward pass, from the profiler's events."""
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
