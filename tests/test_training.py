"""training: full fine-tuning, LoRA and DoRA on real SST-2 and the real packaged MiniLM, records, schedule, device."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch
from peft import get_peft_model

from labhelpers import analysis, training
from labhelpers.checks.finetune import reference_evaluate_accuracy, reference_lora_config, reference_train_one_epoch
from labhelpers.errors import LabConfigError
from labhelpers.models import count_parameters

make_lora_config = reference_lora_config

TINY = training.Settings(seeds=(0,), n_train=32, n_eval=16, checkpoints=2)


@pytest.fixture(scope="module")
def small_bert(base_model_and_tokenizer):
    """A freshly initialised 2-layer BERT classifier (hidden 16) with MiniLM's tokenizer: seconds per run."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = base_model_and_tokenizer[1]
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=128, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval(), tokenizer


def _run(settings, model_and_tokenizer, sst2_dir, output_dir, train=reference_train_one_epoch, **kwargs):
    model, tokenizer = model_and_tokenizer
    return training.run_comparison(
        make_lora_config, train, reference_evaluate_accuracy, settings, base_model=model, tokenizer=tokenizer,
        data_dir=sst2_dir, output_dir=output_dir, progress=False, device="cpu", **kwargs,
    )  # fmt: skip


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
        make_lora_config, train_one_epoch, evaluate_accuracy, TINY, base_model=model, tokenizer=tokenizer,
        data_dir=sst2_dir, output_dir=output_dir, progress=False, device="cpu",
    )  # fmt: skip
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return comparison, output_dir, calls, unchanged


def test_comparison_calls_the_students_functions_per_checkpoint_and_epoch(tiny_run):
    _, _, calls, _ = tiny_run
    assert calls == {"train": 3 * 2, "evaluate": 3 * 1}  # 3 methods × 2 checkpoints; 3 methods × 1 epoch


def test_comparison_leaves_the_base_model_untouched(tiny_run):
    assert tiny_run[3]


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
    assert "weights" not in json.dumps(saved)


def test_results_file_rebuilds_the_same_records(tiny_run):
    comparison, output_dir, _, _ = tiny_run
    saved = json.loads((output_dir / training.RESULTS_FILE).read_text())
    rebuilt = training.Comparison.from_json(saved)
    assert rebuilt.to_json() == saved == comparison.to_json()
    assert rebuilt.settings == comparison.settings
    assert [c.decomposition for c in rebuilt.runs[2].checkpoints] == [
        c.decomposition for c in comparison.runs[2].checkpoints
    ]


def test_trainable_parameters_are_every_weight_for_full_and_the_adapters_otherwise(tiny_run, base_model_and_tokenizer):
    comparison, _, _, _ = tiny_run
    model, _ = base_model_and_tokenizer
    full, lora, dora = comparison.runs
    assert full.trainable_params == full.total_params == sum(p.numel() for p in model.parameters())
    for run in (lora, dora):
        peft_model = get_peft_model(copy.deepcopy(model), make_lora_config(run.method == "dora"))
        assert (run.trainable_params, run.total_params) == count_parameters(peft_model)
    # DoRA adds one magnitude per output feature of each adapted layer: 12 layers × 384, about 6 % of LoRA's.
    assert dora.trainable_params - lora.trainable_params == 12 * 384
    assert 0.06 < (dora.trainable_params - lora.trainable_params) / lora.trainable_params < 0.065


def test_checkpoints_keep_the_weights_each_method_trains(tiny_run):
    comparison, _, _, _ = tiny_run
    assert set(comparison.pretrained) == set(comparison.runs[0].checkpoints[0].weights)
    for run in comparison.runs:
        for checkpoint in run.checkpoints:
            for layer, W in checkpoint.weights.items():
                assert W.dtype == torch.float32 and W.device.type == "cpu"
                expected = analysis.magnitude_direction_change(comparison.pretrained[layer], W)
                assert checkpoint.decomposition[layer] == pytest.approx(expected, rel=1e-12)


def test_kept_weights_feed_the_decomposition_trajectory(tiny_run):
    comparison, _, _, _ = tiny_run
    trajectory = analysis.decomposition_trajectory(comparison)
    assert len(trajectory.points) == 3 * 2 * 12  # methods × checkpoints × adapted matrices
    for run in comparison.runs:
        rows = run.to_json()["decomposition"]
        mine = [p for p in trajectory.points if p.method == run.method]
        np.testing.assert_allclose([p.delta_m for p in mine], rows["delta_m"], rtol=1e-9)


def test_runs_do_not_depend_on_the_other_methods(tiny_run, base_model_and_tokenizer, sst2_dir, tmp_path):
    comparison, _, _, _ = tiny_run
    alone = _run(dataclasses.replace(TINY, methods=("dora",)), base_model_and_tokenizer, sst2_dir, tmp_path,
                 keep_weights=False)  # fmt: skip
    # Same seed, same head, adapters, batches and dropout as DoRA's run after full FT and LoRA: paired runs.
    assert alone.runs[0].train_loss == comparison.runs_of("dora")[0].train_loss
    assert not alone.runs[0].checkpoints[0].weights  # keep_weights=False keeps none


def test_schedule_warms_up_then_decays_inside_the_students_loop(small_bert, sst2_dir, tmp_path):
    seen = []

    def train_one_epoch(model, loader, optimizer):
        model.train()
        losses = []
        for batch in loader:
            seen.append(optimizer.param_groups[0]["lr"])
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return sum(losses) / len(losses)

    # 4 steps, 1 of warm-up: transformers' linear schedule gives 0, then lr · (4 - k) / 3.
    settings = dataclasses.replace(
        TINY, methods=("full", "lora"), n_train=64, schedule="linear", warmup_ratio=0.25, checkpoints=4
    )
    _run(settings, small_bert, sst2_dir, tmp_path, train=train_one_epoch, keep_weights=False)
    rates = training.LEARNING_RATES
    assert seen == pytest.approx([rates[m] * f for m in ("full", "lora") for f in (0.0, 1.0, 2 / 3, 1 / 3)])


def test_a_loop_that_steps_twice_per_batch_is_named(small_bert, sst2_dir, tmp_path):
    def train_one_epoch(model, loader, optimizer):
        for batch in loader:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.step()
            optimizer.zero_grad()
        return 0.5

    settings = dataclasses.replace(TINY, methods=("lora",))
    with pytest.raises(LabConfigError, match="exactly once per batch"):
        _run(settings, small_bert, sst2_dir, tmp_path, train=train_one_epoch)


def test_full_fine_tuning_trains_every_weight(small_bert, sst2_dir, tmp_path):
    model, _ = small_bert
    changed = {}

    def train_one_epoch(model, loader, optimizer):
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        loss = reference_train_one_epoch(model, loader, optimizer)
        changed.update({name: not torch.equal(before[name], p) for name, p in model.named_parameters()})
        return loss

    comparison = _run(dataclasses.replace(TINY, methods=("full",)), small_bert, sst2_dir, tmp_path,
                      train=train_one_epoch)  # fmt: skip
    assert set(changed) == {name for name, _ in model.named_parameters()}
    assert all(changed.values())  # embeddings, every encoder weight, the pooler and the head
    final = comparison.runs[0].checkpoints[-1].weights
    assert all(not torch.equal(final[k], comparison.pretrained[k]) for k in final)


# fmt: off
@pytest.mark.parametrize(
    "batches, epochs, checkpoints, expected",
    [
        (4, 1, 4, [(0, 0, 1, True, False), (0, 1, 2, True, False), (0, 2, 3, True, False), (0, 3, 4, True, True)]),
        # 10 · k/3 = 3.33, 6.67, 10
        (10, 1, 3, [(0, 0, 3, True, False), (0, 3, 7, True, False), (0, 7, 10, True, True)]),
        # 313 · k/4 = 78.25, 156.5 (half up: 157), 234.75, 313
        (313, 1, 4, [(0, 0, 78, True, False), (0, 78, 157, True, False), (0, 157, 235, True, False),
                     (0, 235, 313, True, True)]),
        # 6 · k/4 = 1.5, 3, 4.5, 6 over two epochs of 3 batches
        (3, 2, 4, [(0, 0, 2, True, False), (0, 2, 3, True, True), (1, 0, 2, True, False), (1, 2, 3, True, True)]),
        (5, 2, 1, [(0, 0, 5, False, True), (1, 0, 5, True, True)]),
    ],
    ids=["quarters", "thirds-rounded", "student-size", "across-epochs", "final-only"],
)
# fmt: on
def test_segments_end_at_every_checkpoint_and_epoch(batches, epochs, checkpoints, expected):
    assert training._segments(batches, epochs, checkpoints) == expected


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(methods=("lora", "qlora")), "methods"),
        (dict(methods=("lora", "lora")), "methods"),
        (dict(seeds=()), "seeds"),
        (dict(learning_rates={"lora": 1e-3, "dora": 1e-3}), "learning rate for full"),
        (dict(learning_rates={**training.LEARNING_RATES, "dora": 0}), "learning rate for dora"),
        (dict(schedule="cosine"), "schedule"),
        (dict(warmup_ratio=1.0), "warmup_ratio"),
        (dict(num_epochs=0), "num_epochs"),
        (dict(checkpoints=0), "checkpoints"),
    ],
    ids=[
        "unknown-method",
        "repeated-method",
        "no-seeds",
        "missing-rate",
        "zero-rate",
        "unknown-schedule",
        "all-warm-up",
        "no-epochs",
        "no-checkpoints",
    ],  # fmt: skip
)
def test_settings_reject_unusable_values_by_name(change, message):
    with pytest.raises(LabConfigError, match=message):
        dataclasses.replace(TINY, **change)


def test_settings_print_what_is_used():
    settings = training.Settings(learning_rates={"full": 5e-5, "lora": 2e-3, "dora": 4e-3}, n_train=5000)
    text = str(settings)
    assert "full FT 5e-05, LoRA 0.002, DoRA 0.004" in text
    assert "5,000 training sentences in batches of 16 (313 steps)" in text
    assert f"schedule: {training.schedule_name(settings.schedule, settings.warmup_ratio)}" in text
    assert "25, 50, 75, 100 % of training" in text and "all 872" in text


@pytest.mark.parametrize(
    "schedule, warmup_ratio, name",
    [("constant_with_warmup", 0.0, "constant"), ("linear", 0.1, "linear decay, 10 % warm-up")],
    ids=["constant", "linear-warm-up"],
)
def test_schedule_names(schedule, warmup_ratio, name):
    assert training.schedule_name(schedule, warmup_ratio) == name


@pytest.mark.parametrize("fast", [False, True], ids=["student", "fast"])
def test_default_settings_run_all_three_methods(fast):
    settings = training.default_settings(fast)
    assert settings.methods == ("full", "lora", "dora") and settings.checkpoints == 4
    assert settings.learning_rates == training.LEARNING_RATES and settings.gradient_steps > 0


def test_fast_settings_are_smaller_than_the_student_size():
    fast, full = training.default_settings(True), training.default_settings(False)
    assert len(full.seeds) >= 3 and len(fast.seeds) < len(full.seeds)
    assert fast.n_train * fast.num_epochs < full.n_train * full.num_epochs
    assert fast.gradient_steps < full.gradient_steps


@pytest.mark.parametrize(
    "settings, make_config, message",
    [
        (TINY, lambda use_dora: make_lora_config(False), "use_dora"),
        (TINY, lambda use_dora: {"r": 8}, "peft.LoraConfig"),
        (dataclasses.replace(TINY, checkpoints=3), make_lora_config, "checkpoints=3"),
    ],
    ids=["ignores-use_dora", "not-a-config", "more-checkpoints-than-steps"],
)
def test_comparison_rejects_unusable_arguments(settings, make_config, message, base_model_and_tokenizer, sst2_dir,
                                               tmp_path):  # fmt: skip
    model, tokenizer = base_model_and_tokenizer
    with pytest.raises(LabConfigError, match=message):
        training.run_comparison(
            make_config, reference_train_one_epoch, reference_evaluate_accuracy, settings, base_model=model,
            tokenizer=tokenizer, data_dir=sst2_dir, output_dir=tmp_path, progress=False, device="cpu",
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Devices


def test_batches_are_moved_to_the_device():
    loader = [{"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.zeros(2, dtype=torch.long)}] * 3
    batches = list(training._Batches(loader, 2, torch.device("meta")))
    assert len(batches) == 2  # the first 2 of the 3
    assert {value.device.type for batch in batches for value in batch.values()} == {"meta"}


@pytest.mark.parametrize(
    "device, message",
    [("meta", "holds no data"), ("tpu", "not a torch device"), ("cuda:7", "GPU")],
    ids=["meta", "unknown", "missing-gpu"],
)
def test_unusable_devices_get_a_clear_error(device, message, base_model_and_tokenizer, sst2_dir, tmp_path):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(LabConfigError, match=message):
        training.run_comparison(
            make_lora_config, reference_train_one_epoch, reference_evaluate_accuracy, TINY,
            base_model=base_model_and_tokenizer[0], tokenizer=base_model_and_tokenizer[1], data_dir=sst2_dir,
            output_dir=tmp_path, progress=False, device=device,
        )  # fmt: skip


def test_device_defaults_to_lab_device(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    assert analysis.resolve_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("LAB_DEVICE", "cuda")
        with pytest.raises(LabConfigError, match="LAB_DEVICE=cpu"):
            analysis.resolve_device()


# ---------------------------------------------------------------------------------------------------------------
# Summaries and paired differences


def _records(accuracies: dict[str, list[float]], n_eval=872):
    runs = [
        training.Run(
            method=method,
            seed=seed,
            lr=1e-3,
            val_accuracy_per_epoch=[a],
            train_loss=[0.4 + 0.01 * seed],
            checkpoints=[],
            trainable_params={"full": 1000, "lora": 10, "dora": 12}[method],
            total_params=1000,
            train_seconds=3.0 + seed,
            eval_seconds=1.0,
            lora_config=None,
        )  # fmt: skip
        for method, values in accuracies.items()
        for seed, a in enumerate(values)
    ]
    return training.Comparison(
        settings=training.Settings(methods=tuple(accuracies), seeds=tuple(range(3))), runs=runs, n_train=100,
        n_eval=n_eval, device="cpu", model="test", torch_threads=1,
    )  # fmt: skip


def test_summarize_gives_mean_sample_std_and_binomial_error(capsys):
    comparison = _records({"lora": [0.80, 0.84, 0.83], "dora": [0.81, 0.86, 0.83]})
    summary = training.summarize(comparison)
    lora = summary["lora"]
    assert lora.val_accuracy_mean == pytest.approx(np.mean([0.80, 0.84, 0.83]))
    assert lora.val_accuracy_std == pytest.approx(np.std([0.80, 0.84, 0.83], ddof=1))
    assert lora.binomial_se == pytest.approx(math.sqrt(lora.val_accuracy_mean * (1 - lora.val_accuracy_mean) / 872))
    assert lora.train_loss_mean == pytest.approx(0.41) and lora.seconds_mean == pytest.approx(5.0)
    out = capsys.readouterr().out
    assert "0.823 ± 0.021" in out and "DoRA − LoRA: +1.0, +2.0, +0.0 points" in out


@pytest.mark.parametrize(
    "lora, dora, separates",
    [
        ([0.80, 0.84, 0.83], [0.81, 0.85, 0.84], True),  # +1 point every seed: no spread, interval [+1, +1]
        ([0.80, 0.84, 0.83], [0.81, 0.86, 0.83], False),  # +1, +2, 0: t(2) = 4.30 makes the interval include 0
        ([0.80, 0.84, 0.83], [0.78, 0.81, 0.81], True),
    ],
    ids=["constant-gap", "noisy-gap", "negative-gap"],
)
def test_paired_differences_use_the_same_seeds_and_a_t_interval(lora, dora, separates):
    (difference,) = training.paired_differences(_records({"lora": lora, "dora": dora}))
    values = np.subtract(dora, lora)
    assert (difference.method, difference.baseline, difference.seeds) == ("dora", "lora", (0, 1, 2))
    assert difference.differences == pytest.approx(values)
    assert difference.mean == pytest.approx(values.mean())
    assert difference.standard_error == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert difference.interval == pytest.approx(
        (values.mean() - 4.303 * difference.standard_error, values.mean() + 4.303 * difference.standard_error)
    )
    assert difference.separates == separates


def test_paired_differences_of_three_methods_and_one_seed():
    differences = training.paired_differences(_records({"full": [0.9], "lora": [0.8], "dora": [0.85]}))
    assert [(d.method, d.baseline) for d in differences] == [("dora", "lora"), ("full", "lora"), ("full", "dora")]
    assert math.isnan(differences[0].standard_error) and not differences[0].separates
    assert "no verdict" in training._difference_line(differences[0])


def test_insights_state_only_measured_numbers():
    text = training.insights(
        _records({"full": [0.9, 0.91, 0.92], "lora": [0.8, 0.84, 0.83], "dora": [0.81, 0.85, 0.84]})
    )
    assert "full FT: 0.910 ± 0.010 over 3 seeds" in text
    assert "binomial SE of 0.010" in text  # sqrt(0.91 · 0.09 / 872)
    assert "2 more trainable parameters than LoRA (+20.0 %" in text
    assert "DoRA − LoRA: +1.0, +1.0, +1.0 points" in text


# ---------------------------------------------------------------------------------------------------------------
# Choosing the learning rates (make tune)


def _tuning(accuracy):
    rows = [
        training.TuningRow(m, s, w, lr, seed, accuracy(m, (s, w), lr) + 0.001 * seed, 0.3, 1.0)
        for (s, w) in (("constant_with_warmup", 0.0), ("linear", 0.1))
        for m in ("full", "lora", "dora")
        for lr in ((1e-5, 1e-4) if m == "full" else (1e-3, 2e-3))
        for seed in (0, 1)
    ]
    tuning = training.Tuning(rows=rows, n_train=100, n_heldout=50)
    tuning.choose()
    return tuning


@pytest.mark.parametrize(
    "warm_up_helps, schedule",
    [({"full", "lora", "dora"}, ("linear", 0.1)), ({"full", "lora"}, ("constant_with_warmup", 0.0))],
    ids=["helps-all-three", "helps-two"],
)
def test_tuning_keeps_warm_up_only_if_it_helps_every_method(warm_up_helps, schedule):
    def accuracy(method, sched, lr):
        bonus = 0.02 if sched[0] == "linear" and method in warm_up_helps else -0.01 * (sched[0] == "linear")
        return 0.8 + bonus + (0.01 if lr in (1e-4, 2e-3) else 0.0)

    tuning = _tuning(accuracy)
    assert tuning.chosen_schedule == schedule
    assert tuning.chosen == {"full": 1e-4, "lora": 2e-3, "dora": 2e-3}
    assert tuning.best("lora", schedule) == (2e-3, pytest.approx(accuracy("lora", schedule, 2e-3) + 0.0005))
    table = tuning.table()
    assert table.count("<- best") == 6 and "Chosen:" in table
    assert json.loads(json.dumps(tuning.to_json()))["chosen"] == tuning.chosen


def test_tuning_breaks_ties_by_the_lower_training_loss():
    rows = [
        training.TuningRow("lora", "linear", 0.1, lr, 0, 0.885, loss, 1.0)
        for lr, loss in ((1e-3, 0.30), (2e-3, 0.25), (4e-3, 0.28))
    ]
    tuning = training.Tuning(rows=rows, n_train=100, n_heldout=1000)
    tuning.choose()
    assert tuning.chosen == {"lora": 2e-3}


def test_heldout_sample_is_disjoint_from_the_training_sample(sst2_dir):
    from labhelpers.data import load_sst2

    train_set = load_sst2("train", n=500, data_dir=sst2_dir)
    heldout = training.heldout_train_sample(train_set, 300, data_dir=sst2_dir)
    assert len(heldout) == 300 and not set(heldout["idx"]) & set(train_set["idx"])
    assert abs(np.mean(heldout["label"]) - np.mean(train_set["label"])) < 0.01  # both stratified


def test_tuning_never_reads_the_validation_split(small_bert, tmp_path, sst2_dir):
    only_train = tmp_path / "sst2"
    only_train.mkdir()
    os.symlink(sst2_dir / "train.tsv", only_train / "train.tsv")  # no validation.tsv: reading it would fail
    model, tokenizer = small_bert
    tuning = training.tune_learning_rates(
        make_lora_config, reference_train_one_epoch, reference_evaluate_accuracy,
        dataclasses.replace(TINY, methods=("lora",)), {"lora": (1e-3, 2e-3)}, (("linear", 0.0),), n_heldout=16,
        base_model=model, tokenizer=tokenizer, data_dir=only_train, device="cpu", progress=False,
    )  # fmt: skip
    assert [(r.method, r.lr, r.seed) for r in tuning.rows] == [("lora", 1e-3, 0), ("lora", 2e-3, 0)]
    assert tuning.n_heldout == 16 and set(tuning.chosen) == {"lora"}


def test_full_fine_tuning_can_run_fewer_seeds(small_bert, sst2_dir, tmp_path):
    settings = dataclasses.replace(TINY, methods=("full", "lora"), seeds=(0, 1), full_seeds=(1,))
    comparison = _run(settings, small_bert, sst2_dir, tmp_path, keep_weights=False)
    assert [(run.method, run.seed) for run in comparison.runs] == [("full", 1), ("lora", 0), ("lora", 1)]
    assert "seeds 0, 1 (full FT: 1)" in str(settings)
    saved = training.Comparison.from_json(json.loads((tmp_path / training.RESULTS_FILE).read_text()))
    assert saved.settings.full_seeds == (1,)
    (difference,) = training.paired_differences(comparison)
    assert difference.seeds == (1,)
    with pytest.raises(LabConfigError, match="at least one seed"):
        dataclasses.replace(TINY, full_seeds=())
