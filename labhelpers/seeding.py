"""The lab's one random-state policy: seed the global generators for good, or fork them for one block.

- `seed_all(seed)` seeds Python's, NumPy's and torch's global generators and leaves them seeded: what a notebook's
  first cell and each training run need (dropout in your training loop draws from torch's global stream after the
  model is built).
- `forked(seed)` runs a block on its own random state and gives the caller's back afterwards: what a check, a
  benchmark or a side experiment needs, so that running it never shifts what the notebook draws next.
- `reseed_cpu(seed)` re-seeds torch's CPU generator alone, cheaply, inside a `forked` block (before every seeded
  forward of a check).

Imports only random, numpy and torch: the grading sandbox mounts this file beside labhelpers/probes/.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the CPU's and every GPU's) and leave them seeded.

    Args:
        seed: a whole number >= 0.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reseed_cpu(seed: int) -> None:
    """Seed torch's CPU generator, the one nn.Linear's init and dropout on the CPU draw from.

    Not torch.manual_seed: without a GPU it queues a lazy seeding call, with its stack trace, for every accelerator
    backend on every call, which makes a check of hundreds of seeded forwards slow.

    Args:
        seed: a whole number >= 0.
    """
    torch.default_generator.manual_seed(seed)


def _cuda_index(device: str | torch.device | None) -> int | None:
    """Return the GPU index of a CUDA device (its current one for a bare "cuda"), or None for any other device."""
    if device is None or torch.device(device).type != "cuda":
        return None
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


@contextmanager
def forked(seed: int | None = None, device: str | torch.device | None = None) -> Iterator[None]:
    """Run a block on its own random state; restore Python's, NumPy's and torch's generators afterwards.

    Args:
        seed: seed every forked generator with this at the start of the block; None keeps their current state.
        device: a CUDA device whose generator is forked (and seeded) too; None or a CPU device forks the CPU's only.
    """
    gpu = _cuda_index(device)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[] if gpu is None else [gpu]):
            if seed is not None:
                random.seed(seed)
                np.random.seed(seed)
                reseed_cpu(seed)
                if gpu is not None:
                    with torch.cuda.device(gpu):
                        torch.cuda.manual_seed(seed)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
