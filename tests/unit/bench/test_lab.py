"""labhelpers.bench.lab: the lab's benchmark prints its table and writes bench.json."""

from __future__ import annotations

import json

import torch

from labhelpers import bench
from tests.support.layer_cells import IN, OUT, TOKENS


def test_run_lab_bench_prints_a_table_and_writes_json(tmp_path, dora_notebook, capsys, monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    out = tmp_path / "outputs" / "bench.json"
    options = bench.LabBenchOptions(
        out=out,
        solution=dora_notebook,
        sizes=((OUT, IN),),
        tokens=(4, TOKENS),
        dropouts=(0.0, 0.1),
        r=2,
        repeats=2,
        warmup=0,
        threads=1,
        clock="cpu",
    )
    returned = bench.run_lab_bench(options)
    payload = json.loads(out.read_text())
    assert payload["r"] == 2 and payload["solution"] == str(dora_notebook)
    assert payload["dropouts"] == [0.0, 0.1] and payload["device"] == "cpu" and payload["clock"] == "cpu"
    assert all(run["clock"] == "cpu" for run in payload["results"])
    assert [
        (run["out_features"], run["in_features"], run["tokens"], run["lora_dropout"]) for run in payload["results"]
    ] == [
        (OUT, IN, 4, 0.0),
        (OUT, IN, 4, 0.1),
        (OUT, IN, TOKENS, 0.0),
        (OUT, IN, TOKENS, 0.1),
    ]
    assert payload["results"] == json.loads(json.dumps([result.to_json() for result in returned]))
    expected_layers = ["lora", "peft_dora", "lab_dora", "lab_efficient"]
    assert all(list(run["layers"]) == expected_layers for run in payload["results"])
    printed = capsys.readouterr().out
    assert (
        "on 1 CPU threads" in printed
        and "median cpu time" in printed
        and f"{OUT}x{IN}" in printed
        and "lab_efficient" in printed
    )
    assert "load average" in printed and str(out) in printed


def test_cases_cover_every_size_tokens_and_dropout_sizes_first():
    options = bench.LabBenchOptions(sizes=((8, 4), (6, 2)), tokens=(3,), dropouts=(0.0, 0.1), r=2, threads=1)
    cases = options.cases(torch.device("cpu"))
    assert [(c.out_features, c.in_features, c.tokens, c.lora_dropout) for c in cases] == [
        (8, 4, 3, 0.0),
        (8, 4, 3, 0.1),
        (6, 2, 3, 0.0),
        (6, 2, 3, 0.1),
    ]
    assert {(c.r, c.threads, c.device, c.seed) for c in cases} == {(2, 1, torch.device("cpu"), 0)}


def test_the_lab_defaults_time_three_sizes_two_token_counts_and_two_dropouts():
    cases = bench.LabBenchOptions().cases(torch.device("cpu"))
    assert len(cases) == len(bench.SIZES) * len(bench.TOKENS) * len(bench.DROPOUTS) == 12
    assert {(c.repeats, c.warmup, c.threads, c.clock, c.r, c.lora_alpha) for c in cases} == {
        (30, 5, 2, "wall", 8, 16.0)
    }
