"""Shared fixtures: the real SST-2 folder and the real packaged model, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labhelpers.config import PROJECT_ROOT

# Nothing loads from the network at test time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_SST2 = PROJECT_ROOT.parent / "shared" / "data" / "sst2"

# Each pytest-xdist worker uses its share of the cores: two workers with PyTorch's default (a thread per core each)
# would oversubscribe them, and OpenMP's waiting threads spin.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(autouse=True)
def _settings_from_the_environment(monkeypatch):
    """Each test starts with no setup() in force: get_config() reads the LAB_* variables (a test may set them)."""
    from labhelpers import config

    monkeypatch.setattr(config, "_active", None)


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    """The SST-2 folder the tests read: $LAB_DATA_DIR, else ../shared/data/sst2."""
    folder = Path(os.environ.get("LAB_DATA_DIR") or SHARED_SST2)
    if not (folder / "train.tsv").is_file():
        pytest.fail(f"SST-2 not found at {folder}: set LAB_DATA_DIR to a folder with train.tsv and validation.tsv")
    return folder


@pytest.fixture(scope="session")
def base_model_and_tokenizer():
    """The packaged pretrained all-MiniLM-L6-v2 with a 2-label head (read-only: deepcopy before training)."""
    from labhelpers.models import load_base_model

    return load_base_model(verbose=False)


@pytest.fixture
def three_threads():
    """PyTorch at 3 threads for the test (a count no code sets by itself), then as it was: a thread count a test checks
    is restored must differ from what the code under test sets."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)
