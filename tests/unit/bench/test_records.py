"""labhelpers.bench.records: results serialise to bench.json's layout, with the adapter settings only when known."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from labhelpers import bench

SETTINGS = bench.BenchSettings(12, 20, 6, lora_dropout=0.1, r=2, repeats=2, warmup=1, threads=1, device="cpu")
RESULT = bench.BenchResult(
    settings=SETTINGS,
    baseline="lora",
    load_average=(0.5, 0.75),
    schedule=["lora", "peft_dora", "peft_dora", "lora"],
    layers={
        "lora": bench.LayerTiming(times_s=[0.002, 0.004], median_s=0.003, ratio=1.0, peak_bytes=1024),
        "peft_dora": bench.LayerTiming(times_s=[0.006, 0.006], median_s=0.006, ratio=2.0, peak_bytes=3072),
    },
)
TIME_LAYERS_KEYS = [
    "in_features",
    "out_features",
    "tokens",
    "repeats",
    "warmup",
    "threads",
    "input_requires_grad",
    "device",
    "clock",
    "baseline",
    "load_average",
    "schedule",
    "layers",
]


def test_a_time_layers_result_has_bench_json_keys_in_order():
    entry = RESULT.to_json()
    assert list(entry) == TIME_LAYERS_KEYS
    assert entry["load_average"] == [0.5, 0.75] and entry["device"] == "cpu" and entry["baseline"] == "lora"
    assert entry["layers"]["peft_dora"] == {
        "times_s": [0.006, 0.006],
        "median_s": 0.006,
        "ratio": 2.0,
        "peak_bytes": 3072,
    }


def test_a_compare_result_adds_the_adapter_settings_last():
    entry = replace(RESULT, built_from_settings=True).to_json()
    assert list(entry) == [*TIME_LAYERS_KEYS, "r", "lora_alpha", "lora_dropout"]
    assert (entry["r"], entry["lora_alpha"], entry["lora_dropout"]) == (2, 16.0, 0.1)


@pytest.mark.parametrize("built_from_settings, dropout", [(True, 0.1), (False, None)], ids=["compare", "time_layers"])
def test_lora_dropout_is_known_only_for_layers_built_from_the_settings(built_from_settings, dropout):
    assert replace(RESULT, built_from_settings=built_from_settings).lora_dropout == dropout


def test_results_are_plain_json():
    entry = replace(RESULT, built_from_settings=True).to_json()
    assert json.loads(json.dumps(entry)) == entry
