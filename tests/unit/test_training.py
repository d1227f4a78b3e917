"""training: settings and their checks, the pieces of a run, and short real runs of a 2-layer BERT on SST-2."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from labhelpers import results, training
from labhelpers.checks.finetune import reference_evaluate_accuracy, reference_lora_config, reference_train_one_epoch
from labhelpers.config import LabConfig
from labhelpers.errors import LabConfigError
from labhelpers.training.loop import _Batches, _segments
from labhelpers.weights import linear_weights
from tests.support.training import REFERENCE, TINY, comparison_on_cpu, small_bert


@pytest.fixture(scope="module")
def small_model(base_model_and_tokenizer):
    """A freshly initialised 2-layer BERT classifier (hidden 16) with MiniLM's tokenizer: seconds per run."""
    tokenizer = base_model_and_tokenizer[1]
    return small_bert(tokenizer), tokenizer


# ---------------------------------------------------------------------------------------------------------------
# Settings


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


# ---------------------------------------------------------------------------------------------------------------
# The pieces of a run


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
    assert _segments(batches, epochs, checkpoints) == expected


def test_batches_are_moved_to_the_device():
    loader = [{"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.zeros(2, dtype=torch.long)}] * 3
    batches = list(_Batches(loader, 2, torch.device("meta")))
    assert len(batches) == 2  # the first 2 of the 3
    assert {value.device.type for batch in batches for value in batch.values()} == {"meta"}


def test_prepare_loads_the_model_the_data_and_the_pretrained_weights_once(small_model, sst2_dir):
    model, tokenizer = small_model
    config = LabConfig(data_dir=sst2_dir, device="cpu")
    context = training.prepare(REFERENCE, TINY, base_model=model, tokenizer=tokenizer, config=config, progress=False)
    assert (len(context.train_set), context.n_eval, context.device) == (32, 16, torch.device("cpu"))
    configs = context.lora_configs
    assert configs["full"] is None and configs["dora"].use_dora and not configs["lora"].use_dora
    assert sorted(context.pretrained) == sorted(linear_weights(model)) and len(context.pretrained) == 4  # 2 × (q, v)
    assert context.functions is REFERENCE and context.base_model is model


def test_prepare_wants_both_the_model_and_its_tokenizer(small_model):
    with pytest.raises(LabConfigError, match="pass both base_model and tokenizer"):
        training.prepare(REFERENCE, TINY, base_model=small_model[0], progress=False)


# ---------------------------------------------------------------------------------------------------------------
# Short real runs of a 2-layer BERT


def test_schedule_warms_up_then_decays_inside_the_students_loop(small_model, sst2_dir, tmp_path):
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
    comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, train=train_one_epoch, keep_weights=False)
    rates = training.LEARNING_RATES
    assert seen == pytest.approx([rates[m] * f for m in ("full", "lora") for f in (0.0, 1.0, 2 / 3, 1 / 3)])


def test_a_loop_that_steps_twice_per_batch_is_named(small_model, sst2_dir, tmp_path):
    def train_one_epoch(model, loader, optimizer):
        for batch in loader:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.step()
            optimizer.zero_grad()
        return 0.5

    settings = dataclasses.replace(TINY, methods=("lora",))
    with pytest.raises(LabConfigError, match="exactly once per batch"):
        comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, train=train_one_epoch)


def test_full_fine_tuning_trains_every_weight(small_model, sst2_dir, tmp_path):
    model, _ = small_model
    changed = {}

    def train_one_epoch(model, loader, optimizer):
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        loss = reference_train_one_epoch(model, loader, optimizer)
        changed.update({name: not torch.equal(before[name], p) for name, p in model.named_parameters()})
        return loss

    settings = dataclasses.replace(TINY, methods=("full",))
    comparison = comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, train=train_one_epoch)
    assert set(changed) == {name for name, _ in model.named_parameters()}
    assert all(changed.values())  # embeddings, every encoder weight, the pooler and the head
    final = comparison.runs[0].checkpoints[-1].weights
    assert all(not torch.equal(final[k], comparison.pretrained[k]) for k in final)


def test_full_fine_tuning_can_run_fewer_seeds(small_model, sst2_dir, tmp_path):
    settings = dataclasses.replace(TINY, methods=("full", "lora"), seeds=(0, 1), full_seeds=(1,))
    comparison = comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, keep_weights=False)
    assert [(run.method, run.seed) for run in comparison.runs] == [("full", 1), ("lora", 0), ("lora", 1)]
    assert "seeds 0, 1 (full FT: 1)" in str(settings)
    saved = training.Comparison.from_json(json.loads((tmp_path / training.RESULTS_FILE).read_text()))
    assert saved.settings.full_seeds == (1,)
    (difference,) = results.paired_differences(comparison)
    assert difference.seeds == (1,)
    with pytest.raises(LabConfigError, match="at least one seed"):
        dataclasses.replace(TINY, full_seeds=())


# ---------------------------------------------------------------------------------------------------------------
# Unusable arguments


@pytest.mark.parametrize(
    "settings, make_config, message",
    [
        (TINY, lambda use_dora: reference_lora_config(False), "use_dora"),
        (TINY, lambda use_dora: {"r": 8}, "peft.LoraConfig"),
        (dataclasses.replace(TINY, checkpoints=3), reference_lora_config, "checkpoints=3"),
    ],
    ids=["ignores-use_dora", "not-a-config", "more-checkpoints-than-steps"],
)
def test_comparison_rejects_unusable_arguments(settings, make_config, message, base_model_and_tokenizer, sst2_dir,
                                               tmp_path):  # fmt: skip
    model, tokenizer = base_model_and_tokenizer
    with pytest.raises(LabConfigError, match=message):
        training.run_comparison(
            training.LoopFunctions(make_config, reference_train_one_epoch, reference_evaluate_accuracy), settings,
            base_model=model, tokenizer=tokenizer, config=LabConfig(data_dir=sst2_dir, output_dir=tmp_path, device="cpu"),
            progress=False,
        )  # fmt: skip


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
            REFERENCE, TINY, base_model=base_model_and_tokenizer[0], tokenizer=base_model_and_tokenizer[1],
            config=LabConfig(data_dir=sst2_dir, output_dir=tmp_path, device=device), progress=False,
        )  # fmt: skip
