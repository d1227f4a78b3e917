"""labhelpers.bench.memory: the peak memory of one training step."""

from __future__ import annotations

import torch
import torch.nn as nn

from labhelpers import bench
from tests.support.layer_cells import IN, OUT


def test_peak_memory_grows_with_tokens():
    layer = nn.Linear(IN, OUT)
    small, large = (
        bench.peak_step_bytes(layer, torch.randn(n, IN, requires_grad=True), torch.randn(n, OUT)) for n in (64, 256)
    )
    # The output (tokens, OUT) and the input gradient (tokens, IN) are float32 and live at the same time.
    assert large >= 256 * (IN + OUT) * 4
    assert large > small
