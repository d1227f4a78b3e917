"""seeding: seed_all leaves every generator seeded; forked gives the caller's state back; reseed_cpu seeds torch's CPU."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from labhelpers import seeding


def _draws() -> tuple[float, float, float]:
    """One number from each global generator: Python's, NumPy's and torch's CPU one."""
    return random.random(), float(np.random.rand()), torch.rand(1).item()


def test_seed_all_makes_every_generator_repeat():
    seeding.seed_all(11)
    first = _draws()
    seeding.seed_all(11)
    assert _draws() == first
    seeding.seed_all(12)
    assert all(a != b for a, b in zip(_draws(), first))


def test_seed_all_seeds_torch_as_manual_seed_does():
    seeding.seed_all(5)
    mine = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(mine, torch.rand(4))  # training's dropout stream is the one torch.manual_seed gives


def test_forked_gives_the_callers_state_back():
    seeding.seed_all(3)
    expected = _draws()
    seeding.seed_all(3)
    with seeding.forked(99):
        _draws()
    assert _draws() == expected


def test_forked_gives_the_state_back_after_an_exception():
    seeding.seed_all(3)
    expected = _draws()
    seeding.seed_all(3)
    with pytest.raises(RuntimeError), seeding.forked(1):
        _draws()
        raise RuntimeError("inside")
    assert _draws() == expected


@pytest.mark.parametrize("caller_seed", [0, 1], ids=["caller-0", "caller-1"])
def test_forked_with_a_seed_draws_the_same_whatever_the_caller(caller_seed):
    seeding.seed_all(caller_seed)
    with seeding.forked(42):
        inside = _draws()
    seeding.seed_all(42)
    assert inside == _draws()


def test_forked_without_a_seed_continues_the_callers_stream():
    seeding.seed_all(8)
    with seeding.forked():
        inside = _draws()
    seeding.seed_all(8)
    assert inside == _draws()


def test_reseed_cpu_seeds_torch_alone():
    seeding.seed_all(0)
    python_next = random.getstate()
    seeding.reseed_cpu(21)
    mine = torch.rand(3)
    torch.manual_seed(21)
    assert torch.equal(mine, torch.rand(3)) and random.getstate() == python_next


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_forked_on_a_gpu_gives_its_state_back():
    torch.cuda.manual_seed(4)
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(4)
    with seeding.forked(9, "cuda"):
        inside = torch.rand(3, device="cuda")
    assert torch.equal(torch.rand(3, device="cuda"), expected)
    torch.cuda.manual_seed(9)
    assert torch.equal(inside, torch.rand(3, device="cuda"))


def test_seeding_imports_nothing_of_the_lab():
    # The grading sandbox mounts seeding.py beside labhelpers/probes/ alone.
    code = (
        "import sys, labhelpers.seeding\n"
        "lab = sorted(m for m in sys.modules if m.startswith('labhelpers.') and m != 'labhelpers.seeding')\n"
        "print(lab)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
