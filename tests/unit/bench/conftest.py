"""The benchmark's shared fixtures: a notebook of the lab's two layers, its classes, and one small comparison.

Tiny non-square layers and few rounds: these tests check what the harness returns, never how fast anything is.
"""

from __future__ import annotations

import pytest

from labhelpers import bench
from tests.support.layer_cells import DORA_CELL, EFFICIENT_CELL, IN, LAB_CLASSES, OUT, TOKENS, write_notebook


@pytest.fixture(scope="module")
def dora_notebook(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("nb") / "dora_lab.ipynb", DORA_CELL, EFFICIENT_CELL)


@pytest.fixture(scope="module")
def lab_layers(dora_notebook):
    classes = bench.load_classes(dora_notebook, LAB_CLASSES)
    return {"lab_dora": classes["DoRALinear"], "lab_efficient": classes["EfficientDoRALinear"]}


@pytest.fixture(scope="module")
def results(lab_layers):
    """One small run of the four layers the lab compares, with the lab's dropout."""
    settings = bench.BenchSettings(
        IN, OUT, TOKENS, lora_dropout=0.1, r=2, repeats=4, warmup=1, threads=1, device="cpu"
    )
    return bench.compare(settings, lab_layers)
