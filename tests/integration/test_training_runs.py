"""Real runs of MiniLM on SST-2: your functions called per piece, results written and read back, runs paired, tuning,
and your own DoRALinear (the solutions') trained beside PEFT's DoRA at the LAB_FAST size.

Every test here trains the packaged MiniLM (most share one tiny comparison: three methods, two optimiser steps each),
a few seconds per run on two cores: they run in `make test`, not in `make test-unit`.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from peft import get_peft_model

from labhelpers import analysis, results, training
from labhelpers.checks.finetune import (
    reference_evaluate_accuracy,
    reference_lora_config,
    reference_make_peft_model,
    reference_train_one_epoch,
)
from labhelpers.config import LabConfig
from labhelpers.models import count_parameters
from labhelpers.weights import magnitude_direction_change
from tests.support.training import TINY, comparison_on_cpu, solution_layer, unchanged


@pytest.fixture(scope="module")
def tiny_run(base_model_and_tokenizer, sst2_dir, tmp_path_factory):
    model, _ = base_model_and_tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    output_dir = tmp_path_factory.mktemp("outputs")
    calls = {"train": 0, "evaluate": 0}

    def train_one_epoch(model, loader, optimizer):
        calls["train"] += 1
        return reference_train_one_epoch(model, loader, optimizer)

    def evaluate_accuracy(model, loader):
        calls["evaluate"] += 1
        return reference_evaluate_accuracy(model, loader)

    tokenizer = base_model_and_tokenizer[1]
    comparison = training.run_comparison(
        training.LoopFunctions(reference_make_peft_model, train_one_epoch, evaluate_accuracy), TINY, base_model=model,
        tokenizer=tokenizer, config=LabConfig(data_dir=sst2_dir, output_dir=output_dir, device="cpu"), progress=False,
    )  # fmt: skip
    return comparison, output_dir, calls, unchanged(model, before)


@pytest.mark.slow
def test_comparison_calls_the_students_functions_per_checkpoint_and_epoch(tiny_run):
    _, _, calls, _ = tiny_run
    assert calls == {"train": 3 * 2, "evaluate": 3 * 1}  # 3 methods × 2 checkpoints; 3 methods × 1 epoch


@pytest.mark.slow
def test_comparison_leaves_the_base_model_untouched(tiny_run):
    assert tiny_run[3]


@pytest.mark.slow
def test_results_file_holds_every_run(tiny_run):
    comparison, output_dir, _, _ = tiny_run
    saved = json.loads((output_dir / training.RESULTS_FILE).read_text())
    assert comparison.results_file == output_dir / training.RESULTS_FILE
    config = saved["config"]
    assert (config["n_train"], config["n_eval"], config["checkpoints"], config["device"]) == (32, 16, 2, "cpu")
    assert config["learning_rates"] == training.LEARNING_RATES and config["schedule"] == training.SCHEDULE
    assert [(r["method"], r["seed"]) for r in saved["runs"]] == [("full", 0), ("lora", 0), ("dora", 0)]
    for run in saved["runs"]:
        assert 0.0 <= run["val_accuracy"] <= 1.0 and run["val_accuracy"] == run["val_accuracy_per_epoch"][-1]
        assert run["lr"] == training.LEARNING_RATES[run["method"]]
        assert len(run["train_loss"]) == 1 and np.isfinite(run["train_loss"][0])
        assert run["checkpoint_epoch"] == [0.5, 1.0] and run["checkpoint_step"] == [1, 2]
        assert run["seconds"] == pytest.approx(run["train_seconds"] + run["eval_seconds"]) and run["seconds"] > 0
        assert (run["lora_config"] is None) == (run["method"] == "full")
        # 6 layers × (query, value) at each of the 2 checkpoints, all changed from the pretrained weights.
        assert len(run["decomposition"]["layer"]) == 24 and min(run["decomposition"]["delta_d"]) > 0
    assert saved["format"] == training.RESULTS_FORMAT and saved["notes"] == []
    assert sorted(p.name for p in output_dir.iterdir()) == [training.RESULTS_FILE, training.WEIGHTS_FILE]


@pytest.mark.slow
def test_results_file_rebuilds_the_same_records(tiny_run):
    comparison, output_dir, _, _ = tiny_run
    saved = json.loads((output_dir / training.RESULTS_FILE).read_text())
    rebuilt = training.Comparison.from_json(saved)
    assert rebuilt.to_json() == saved == comparison.to_json()
    assert rebuilt.settings == comparison.settings
    assert [c.decomposition for c in rebuilt.runs[2].checkpoints] == [
        c.decomposition for c in comparison.runs[2].checkpoints
    ]


@pytest.mark.slow
def test_trainable_parameters_are_every_weight_for_full_and_the_adapters_otherwise(tiny_run, base_model_and_tokenizer):
    comparison, _, _, _ = tiny_run
    model, _ = base_model_and_tokenizer
    full, lora, dora = comparison.runs
    assert full.trainable_params == full.total_params == sum(p.numel() for p in model.parameters())
    for run in (lora, dora):
        peft_model = get_peft_model(copy.deepcopy(model), reference_lora_config(run.method == "dora"))
        assert (run.trainable_params, run.total_params) == count_parameters(peft_model)
    # DoRA adds one magnitude per output feature of each adapted layer: 12 layers × 384, about 6 % of LoRA's.
    assert dora.trainable_params - lora.trainable_params == 12 * 384
    assert 0.06 < (dora.trainable_params - lora.trainable_params) / lora.trainable_params < 0.065


@pytest.mark.slow
def test_checkpoints_keep_the_weights_each_method_trains(tiny_run):
    comparison, _, _, _ = tiny_run
    assert set(comparison.pretrained) == set(comparison.runs[0].checkpoints[0].weights)
    for run in comparison.runs:
        for checkpoint in run.checkpoints:
            for layer, W in checkpoint.weights.items():
                assert W.dtype == torch.float32 and W.device.type == "cpu"
                expected = magnitude_direction_change(comparison.pretrained[layer], W)
                assert checkpoint.decomposition[layer] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_kept_weights_feed_the_decomposition_trajectory(tiny_run):
    comparison, _, _, _ = tiny_run
    trajectory = analysis.decomposition_trajectory(comparison)
    assert len(trajectory.points) == 3 * 2 * 12  # methods × checkpoints × adapted matrices
    for run in comparison.runs:
        rows = run.to_json()["decomposition"]
        mine = [p for p in trajectory.points if p.method == run.method]
        np.testing.assert_allclose([p.delta_m for p in mine], rows["delta_m"], rtol=1e-9)


@pytest.mark.slow
def test_runs_do_not_depend_on_the_other_methods(tiny_run, base_model_and_tokenizer, sst2_dir, tmp_path):
    comparison, _, _, _ = tiny_run
    settings = dataclasses.replace(TINY, methods=("dora",))
    alone = comparison_on_cpu(settings, base_model_and_tokenizer, sst2_dir, tmp_path, keep_weights=False)
    # Same seed, same head, adapters, batches and dropout as DoRA's run after full FT and LoRA: paired runs.
    assert alone.runs[0].train_loss == comparison.runs_of("dora")[0].train_loss
    assert not alone.runs[0].checkpoints[0].weights  # keep_weights=False keeps none


@pytest.mark.slow
def test_tune_trains_every_cell_of_the_table_and_writes_it(monkeypatch, sst2_dir, tmp_path):
    from labhelpers.tuning import TUNING_FILE, TuneOptions, tune

    monkeypatch.setenv("LAB_DATA_DIR", str(sst2_dir))
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    options = TuneOptions(n_train=64, n_heldout=16, methods=("lora",), grid={"lora": (1e-3,)}, output_dir=tmp_path)
    path = tune(options, progress=False)
    saved = json.loads(path.read_text())
    assert path == tmp_path / TUNING_FILE and (saved["n_train"], saved["n_heldout"]) == (64, 16)
    # One row per schedule (constant, linear with warm-up) of the one learning rate and seed.
    assert [(r["schedule"], r["lr"], r["seed"]) for r in saved["rows"]] == [
        ("constant_with_warmup", 1e-3, 0),
        ("linear", 1e-3, 0),
    ]
    assert all(0 <= r["heldout_accuracy"] <= 1 for r in saved["rows"]) and saved["chosen"] == {"lora": 1e-3}


@pytest.mark.slow
def test_your_layer_trains_as_pefts_dora_at_the_fast_size(base_model_and_tokenizer, sst2_dir, tmp_path):
    """The solutions' DoRALinear in MiniLM's query/value layers, from PEFT DoRA's start: the same run, to float noise."""
    settings = dataclasses.replace(training.default_settings("fast"), methods=("dora",))
    comparison = comparison_on_cpu(settings, base_model_and_tokenizer, sst2_dir, tmp_path, layer=solution_layer())
    dora, yours = comparison.runs
    assert (yours.method, yours.seed, yours.trainable_params) == (training.YOUR_LAYER, dora.seed, 79_106)
    agreement = results.layer_agreement(comparison)
    assert agreement.agrees, agreement.verdict()
    assert agreement.accuracy_gap <= results.LAYER_ACCURACY_TOLERANCE
    assert max(agreement.loss_gap, agreement.change_gap) <= results.LAYER_CURVE_RTOL
    # Figure 2 sees one more method, with records like the others'.
    trajectory = analysis.decomposition_trajectory(comparison)
    assert {p.method for p in trajectory.points} == {"dora", training.YOUR_LAYER}
