"""labhelpers.bench.report: the table and the load note."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch.nn as nn

from labhelpers import bench
from tests.support.layer_cells import IN, OUT, TOKENS


def test_format_table_has_a_row_per_layer_and_setting(results):
    header, rule, *rows = bench.format_table([results]).splitlines()
    assert "median ms" in header and "dropout" in header and set(rule) == {"-"}
    assert len(rows) == len(results.layers)
    for line, (name, row) in zip(rows, results.layers.items()):
        assert line.split()[:4] == [f"{OUT}x{IN}", str(TOKENS), "0.1", name], line
        assert f"{row.ratio:.3f}" in line, line


def test_format_table_leaves_the_dropout_empty_when_it_is_unknown():
    """time_layers times factories whose dropout it does not know: the column is blank, not a guess."""
    settings = bench.BenchSettings(IN, OUT, TOKENS, lora_dropout=0.1, repeats=1, warmup=0, threads=1, device="cpu")
    result = bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, settings)
    header, _, row = bench.format_table([result]).splitlines()
    dropout = slice(header.index("dropout"), header.index("dropout") + len("dropout"))
    assert row[dropout].strip() == "" and row.split()[:3] == [f"{OUT}x{IN}", str(TOKENS), "lora"]


@pytest.mark.parametrize("clock, effect", [("wall", "the ratios are inflated"), ("cpu", "inflates far less")])
def test_load_note_gives_the_load_range_and_its_effect(results, clock, effect):
    note = bench.load_note([replace(results, settings=replace(results.settings, clock=clock))])
    low, high = min(results.load_average), max(results.load_average)
    assert f"{low:.1f} to {high:.1f}" in note and "cores" in note and effect in note
