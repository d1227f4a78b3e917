"""training: the multi-seed LoRA/DoRA comparison on real SST-2 and the real packaged MiniLM, with the reference loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model

from labhelpers import analysis, training
from labhelpers.checks.finetune import _reference_evaluate_accuracy, _reference_train_one_epoch
from labhelpers.errors import LabConfigError
from labhelpers.models import count_parameters


def make_lora_config(use_dora):
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        target_modules=["query", "value"],
        use_dora=use_dora,
    )


TINY = dict(
    methods=("lora", "dora"),
    seeds=(0,),
    num_epochs=1,
    lr=1e-3,
    batch_size=16,
    n_train=32,
    n_eval=16,
    checkpoints_per_epoch=2,
)


@pytest.fixture(scope="module")
def tiny_run(base_model_and_tokenizer, sst2_dir, tmp_path_factory):
    model, tokenizer = base_model_and_tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    output_dir = tmp_path_factory.mktemp("outputs")
    calls = {"train": 0, "evaluate": 0}

    def train_one_epoch(model, loader, optimizer):
        calls["train"] += 1
        return _reference_train_one_epoch(model, loader, optimizer)

    def evaluate_accuracy(model, loader):
        calls["evaluate"] += 1
        return _reference_evaluate_accuracy(model, loader)

    results = training.run_comparison(
        make_lora_config, train_one_epoch, evaluate_accuracy, base_model=model, tokenizer=tokenizer,
        data_dir=sst2_dir, output_dir=output_dir, progress=False, **TINY,
    )  # fmt: skip
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return results, output_dir, calls, unchanged


def test_comparison_calls_the_students_functions_per_chunk_and_epoch(tiny_run):
    _, _, calls, _ = tiny_run
    assert calls == {"train": 2 * 2, "evaluate": 2 * 1}  # 2 methods × 2 chunks; 2 methods × 1 epoch


def test_comparison_leaves_the_base_model_untouched(tiny_run):
    assert tiny_run[3]


def test_results_file_holds_every_run(tiny_run):
    results, output_dir, _, _ = tiny_run
    saved = json.loads((output_dir / training.RESULTS_FILE).read_text())
    assert results["results_file"] == str(output_dir / training.RESULTS_FILE)
    assert saved["config"]["n_train"] == 32 and saved["config"]["n_eval"] == 16 and saved["config"]["lr"] == 1e-3
    assert [(r["method"], r["seed"]) for r in saved["runs"]] == [("lora", 0), ("dora", 0)]
    for run in saved["runs"]:
        assert 0.0 <= run["val_accuracy"] <= 1.0 and run["val_accuracy"] == run["val_accuracy_per_epoch"][-1]
        assert len(run["train_loss"]) == 1 and np.isfinite(run["train_loss"][0])
        assert run["checkpoint_epoch"] == [0.5, 1.0]
        assert run["seconds"] == pytest.approx(run["train_seconds"] + run["eval_seconds"]) and run["seconds"] > 0
        assert run["lora_config"]["use_dora"] == (run["method"] == "dora")
        # 6 layers × (query, value) at each of the 2 checkpoints, all changed from the pretrained weights.
        assert len(run["decomposition"]["layer"]) == 24 and min(run["decomposition"]["delta_d"]) > 0
    assert "weights" not in saved


def test_trainable_parameters_are_counted_from_the_peft_model(tiny_run, base_model_and_tokenizer):
    import copy

    results, _, _, _ = tiny_run
    model, _ = base_model_and_tokenizer
    for run in results["runs"]:
        peft_model = get_peft_model(copy.deepcopy(model), make_lora_config(run["method"] == "dora"))
        assert (run["trainable_params"], run["total_params"]) == count_parameters(peft_model)
    lora, dora = results["runs"]
    # DoRA adds one magnitude per output feature of each adapted layer: 12 layers × 384.
    assert dora["trainable_params"] - lora["trainable_params"] == 12 * 384


def test_kept_weights_feed_the_decomposition_trajectory(tiny_run):
    results, _, _, _ = tiny_run
    trajectory = analysis.decomposition_trajectory(results)
    for run in results["runs"]:
        rows = trajectory[run["method"]]
        np.testing.assert_allclose(rows["delta_m"], run["decomposition"]["delta_m"], rtol=1e-9)
        assert np.isfinite(rows["correlation"])


def test_summarize_gives_mean_and_sample_std_per_method(capsys):
    runs = [
        {"method": m, "seed": s, "val_accuracy": a, "train_loss": [0.9, l], "trainable_params": p, "seconds": t}
        for m, p, values in (("lora", 10, [(0.80, 0.5, 3.0), (0.84, 0.4, 5.0), (0.83, 0.3, 4.0)]), ("dora", 12, [(0.9, 0.2, 6.0)]))
        for s, (a, l, t) in enumerate(values)
    ]  # fmt: skip
    summary = training.summarize({"runs": runs})
    assert summary["lora"]["val_accuracy_mean"] == pytest.approx(np.mean([0.80, 0.84, 0.83]))
    assert summary["lora"]["val_accuracy_std"] == pytest.approx(np.std([0.80, 0.84, 0.83], ddof=1))
    assert summary["lora"]["train_loss_mean"] == pytest.approx(0.4) and summary["lora"][
        "seconds_mean"
    ] == pytest.approx(4.0)
    assert summary["dora"]["val_accuracy_std"] == 0.0 and summary["dora"]["trainable_params"] == 12
    out = capsys.readouterr().out
    assert "0.823 ± 0.021" in out and "dora" in out
    assert "DoRA minus LoRA: +7.7 accuracy points" in training.insights({"runs": runs})


@pytest.mark.parametrize("fast", [False, True], ids=["student", "fast"])
def test_default_settings_are_valid_arguments(fast):
    settings = training.default_settings(fast)
    comparison = settings["comparison"]
    assert set(comparison["methods"]) == {"lora", "dora"}
    assert settings["gradient_steps"] > 0
    import inspect

    assert set(comparison) <= set(inspect.signature(training.run_comparison).parameters)


def test_fast_settings_are_smaller_than_the_student_size():
    fast, full = training.default_settings(True)["comparison"], training.default_settings(False)["comparison"]
    assert len(full["seeds"]) >= 3 and len(fast["seeds"]) < len(full["seeds"])
    assert fast["n_train"] * fast["num_epochs"] < full["n_train"] * full["num_epochs"]


@pytest.mark.parametrize(
    "kwargs, make_config, message",
    [
        (dict(methods=("lora", "full")), make_lora_config, "methods"),
        (dict(seeds=()), make_lora_config, "seeds"),
        (dict(num_epochs=0), make_lora_config, "num_epochs"),
        (dict(), lambda use_dora: make_lora_config(False), "use_dora"),
        (dict(), lambda use_dora: {"r": 8}, "peft.LoraConfig"),
    ],
    ids=["unknown-method", "no-seeds", "no-epochs", "ignores-use_dora", "not-a-config"],
)
def test_comparison_rejects_unusable_settings(
    kwargs, make_config, message, base_model_and_tokenizer, sst2_dir, tmp_path
):
    model, tokenizer = base_model_and_tokenizer
    settings = {**TINY, "n_train": 8, "n_eval": 8, **kwargs}
    with pytest.raises(LabConfigError, match=message):
        training.run_comparison(
            make_config, _reference_train_one_epoch, _reference_evaluate_accuracy, base_model=model, tokenizer=tokenizer,
            data_dir=sst2_dir, output_dir=tmp_path, progress=False, **settings,
        )  # fmt: skip
