"""training: settings and their checks, the pieces of a run, and short real runs of a 2-layer BERT on SST-2 (your
layer's run beside PEFT's DoRA, and a comparison saved, reloaded and refused when it was made otherwise)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from peft import get_peft_model

from labhelpers import results, training
from labhelpers.checks.finetune import (
    reference_evaluate_accuracy,
    reference_lora_config,
    reference_make_peft_model,
    reference_train_one_epoch,
)
from labhelpers.config import LabConfig
from labhelpers.errors import LabConfigError
from labhelpers.training.loop import _Batches, _segments
from labhelpers.weights import linear_weights, merged_weights
from tests.support.training import REFERENCE, TINY, comparison_on_cpu, small_bert, solution_layer


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
        (dict(dropout=1.0), "dropout"),
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
        "dropout-one",
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


@pytest.mark.parametrize("size", [False, True, *training.SIZES])
def test_default_settings_run_all_three_methods(size):
    settings = training.default_settings(size)
    assert settings.methods == ("full", "lora", "dora") and settings.checkpoints == 4
    assert settings.learning_rates == training.LEARNING_RATES and settings.gradient_steps > 0


def test_the_long_size_trains_longer_with_a_decaying_schedule_no_dropout_and_more_full_seeds():
    student, long = training.default_settings("student"), training.default_settings("long")
    assert long.steps(long.n_train) >= 4 * student.steps(student.n_train)
    assert long.schedule == "linear" and long.warmup_ratio > 0 and long.dropout == 0.0
    assert len(long.seeds_of("full")) == len(long.seeds) > len(student.seeds_of("full"))
    assert "linear decay, 10 % warm-up; dropout: none" in str(long)


def test_an_unknown_size_is_refused_by_name():
    with pytest.raises(LabConfigError, match="LAB_SIZE"):
        training.default_settings("huge")


def test_settings_round_trip_through_json():
    settings = training.default_settings("long")
    assert training.Settings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


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
    "settings, make_peft_model, message",
    [
        (TINY, lambda model, use_dora: reference_make_peft_model(model, False), "the other kind of adapter"),
        (TINY, lambda model, use_dora: reference_lora_config(use_dora), "not a peft.PeftModel"),
        (TINY, lambda model, use_dora: reference_make_peft_model(copy.deepcopy(model), use_dora), "another model"),
        (dataclasses.replace(TINY, checkpoints=3), reference_make_peft_model, "checkpoints=3"),
    ],
    ids=["ignores-use_dora", "returns-the-config", "wraps-a-copy", "more-checkpoints-than-steps"],
)
def test_comparison_rejects_unusable_arguments(settings, make_peft_model, message, small_model, sst2_dir,
                                               tmp_path):  # fmt: skip
    model, tokenizer = small_model
    with pytest.raises(LabConfigError, match=message):
        training.run_comparison(
            training.LoopFunctions(make_peft_model, reference_train_one_epoch, reference_evaluate_accuracy), settings,
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


def test_a_dropout_setting_reaches_every_dropout_layer(small_model, sst2_dir, tmp_path):
    seen = []

    def train_one_epoch(model, loader, optimizer):
        seen.extend(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))
        return reference_train_one_epoch(model, loader, optimizer)

    settings = dataclasses.replace(TINY, methods=("lora",), dropout=0.0)
    comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, train=train_one_epoch, keep_weights=False)
    # BERT's embedding, attention and hidden dropouts, the head's, and PEFT's on each adapter's input.
    assert len(seen) > 4 and set(seen) == {0.0}


# ---------------------------------------------------------------------------------------------------------------
# Your DoRALinear on SST-2, beside PEFT's DoRA


@pytest.fixture(scope="module")
def layer_run(small_model, sst2_dir, tmp_path_factory):
    """LoRA and DoRA (PEFT) and DoRA with the solutions' DoRALinear, one seed, 2 steps; saved to a folder."""
    output_dir = tmp_path_factory.mktemp("layer_run")
    settings = dataclasses.replace(TINY, methods=("lora", "dora"))
    return comparison_on_cpu(settings, small_model, sst2_dir, output_dir, layer=solution_layer()), output_dir


def test_your_layer_trains_as_pefts_dora_from_the_same_start(layer_run):
    comparison, _ = layer_run
    assert [run.method for run in comparison.runs] == ["lora", "dora", training.YOUR_LAYER]
    dora, yours = comparison.runs[1:]
    assert (yours.seed, yours.lr, yours.trainable_params) == (dora.seed, dora.lr, dora.trainable_params)
    assert yours.lora_config == dora.lora_config
    agreement = results.layer_agreement(comparison)
    assert agreement.agrees and agreement.loss_gap < 1e-5 and agreement.accuracy_gap == 0
    assert "✔ Your layer trains as PEFT's DoRA does on seed 0" in agreement.verdict()


class _Unfinished(torch.nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        raise NotImplementedError()


class _NoMagnitude(torch.nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.lora_A = torch.nn.Parameter(torch.zeros(r, base_layer.in_features))
        self.lora_B = torch.nn.Parameter(torch.zeros(base_layer.out_features, r))


class _FailsInForward(torch.nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.lora_A = torch.nn.Parameter(torch.zeros(r, base_layer.in_features))
        self.lora_B = torch.nn.Parameter(torch.zeros(base_layer.out_features, r))
        self.magnitude = torch.nn.Parameter(torch.ones(base_layer.out_features, 1))

        self.scaling = lora_alpha / r

    def forward(self, x):
        return x @ self.lora_A  # (…, in) @ (r, in): the shapes do not fit


@pytest.mark.parametrize(
    "layer, reason",
    [(_Unfinished, "raised NotImplementedError"), (_NoMagnitude, "no tensor attribute magnitude"),
     (_FailsInForward, "the model with your DoRALinear failed: RuntimeError")],
    ids=["unfinished", "no-magnitude", "fails-in-forward"],
)  # fmt: skip
def test_a_layer_that_cannot_run_is_skipped_with_a_note(layer, reason, small_model, sst2_dir, tmp_path, capsys):
    settings = dataclasses.replace(TINY, methods=("dora",))
    comparison = comparison_on_cpu(settings, small_model, sst2_dir, tmp_path, layer=layer, keep_weights=False)
    assert [run.method for run in comparison.runs] == ["dora"] and results.layer_agreement(comparison) is None
    (note,) = comparison.notes
    assert note.startswith("Your DoRALinear was not trained on SST-2") and reason in note
    results.summarize(comparison)
    assert note in capsys.readouterr().out


def test_checkpoint_weights_are_pefts_merged_weights(small_model):
    from labhelpers.training.states import peft_state, weights_from_state

    model = small_model[0]
    for use_dora in (False, True):
        peft_model = get_peft_model(copy.deepcopy(model), reference_lora_config(use_dora))
        for module in peft_model.modules():  # a trained adapter: lora_B no longer zero
            if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
                torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
        rebuilt = weights_from_state(peft_state(peft_model), linear_weights(model))
        expected = merged_weights(peft_model)
        assert rebuilt.keys() == expected.keys()
        assert all(torch.allclose(rebuilt[k], expected[k], rtol=1e-6, atol=1e-7) for k in expected)


# ---------------------------------------------------------------------------------------------------------------
# Saved, reloaded, refused


def test_a_saved_comparison_reads_back_with_the_same_weights(layer_run):
    comparison, output_dir = layer_run
    assert (output_dir / training.WEIGHTS_FILE).is_file()
    saved = training.read_comparison(output_dir)
    assert saved.to_json() == comparison.to_json() and saved.settings == comparison.settings
    assert all(torch.equal(saved.pretrained[k], v) for k, v in comparison.pretrained.items())
    for before, after in zip(comparison.runs, saved.runs, strict=True):
        for a, b in zip(before.checkpoints, after.checkpoints, strict=True):
            assert a.weights.keys() == b.weights.keys() and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def _reload(layer_run, small_model, monkeypatch, capsys, settings=None, layer=None, **kwargs):
    """Call load_or_run_comparison on the saved comparison; return (what it returned, whether it trained, output)."""
    comparison, output_dir = layer_run
    trained = []
    monkeypatch.setattr(training.reuse, "run_comparison", lambda *args, **kw: trained.append(1) or "trained")
    functions = training.LoopFunctions(
        reference_make_peft_model, reference_train_one_epoch, reference_evaluate_accuracy, layer or solution_layer()
    )
    got = training.load_or_run_comparison(
        functions, settings or comparison.settings, base_model=small_model[0], tokenizer=small_model[1],
        config=LabConfig(output_dir=output_dir, device="cpu"), **kwargs,
    )  # fmt: skip
    return got, bool(trained), capsys.readouterr().out


def test_the_same_settings_and_code_reload_instead_of_training(layer_run, small_model, monkeypatch, capsys):
    got, trained, out = _reload(layer_run, small_model, monkeypatch, capsys)
    assert not trained and isinstance(got, training.Comparison) and len(got.runs) == 3
    assert f"Loaded the comparison from {layer_run[1] / training.RESULTS_FILE}" in out and "written on " in out
    assert "nothing was trained" in out and "reuse=False" in out
    got, trained, _ = _reload(layer_run, small_model, monkeypatch, capsys, reuse=False)
    assert trained and got == "trained"


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(settings=dataclasses.replace(TINY, methods=("lora", "dora"), n_train=48)), "n_train 32 there, 48 now"),
        (dict(settings=dataclasses.replace(TINY, methods=("lora",))), "methods ['lora', 'dora'] there, ['lora'] now"),
        (dict(layer=torch.nn.Linear), "your functions (or your DoRALinear) have changed since"),
    ],
    ids=["other-size", "other-methods", "other-code"],
)
def test_a_comparison_made_otherwise_is_not_reused(change, reason, layer_run, small_model, monkeypatch, capsys):
    got, trained, out = _reload(layer_run, small_model, monkeypatch, capsys, **change)
    assert trained and got == "trained"
    assert f"Not reusing {layer_run[1] / training.RESULTS_FILE}: " in out and reason in out


def test_an_older_layout_or_a_foreign_weights_file_is_not_reused(layer_run, small_model, monkeypatch, capsys, tmp_path):
    import shutil

    for name in (training.RESULTS_FILE, training.WEIGHTS_FILE):
        shutil.copy(layer_run[1] / name, tmp_path / name)
    data = json.loads((tmp_path / training.RESULTS_FILE).read_text())
    moved = (layer_run[0], tmp_path)
    (tmp_path / training.RESULTS_FILE).write_text(json.dumps({**data, "results_id": "another"}))
    _, trained, out = _reload(moved, small_model, monkeypatch, capsys)
    assert trained and "it cannot be read back" in out and "written by another comparison" in out
    (tmp_path / training.RESULTS_FILE).write_text(json.dumps({**data, "format": 1}))
    _, trained, out = _reload(moved, small_model, monkeypatch, capsys)
    assert trained and "the layout of an older version of the lab (1, not 2)" in out
