"""tuning: the choice of learning rates, held-out train sentences, a search that never reads validation, `tune`."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from labhelpers import training
from labhelpers.config import LabConfig
from labhelpers.errors import LabConfigError
from labhelpers.tuning import (
    GRID,
    TUNING_FILE,
    SearchSpace,
    TuneOptions,
    Tuning,
    TuningRow,
    heldout_train_sample,
    tune,
    tune_learning_rates,
)
from tests.support.training import REFERENCE, TINY, small_bert


@pytest.fixture(scope="module")
def small_model(base_model_and_tokenizer):
    """A freshly initialised 2-layer BERT classifier (hidden 16) with MiniLM's tokenizer: seconds per run."""
    tokenizer = base_model_and_tokenizer[1]
    return small_bert(tokenizer), tokenizer


def _tuning(accuracy):
    rows = [
        TuningRow(m, s, w, lr, seed, accuracy(m, (s, w), lr) + 0.001 * seed, 0.3, 1.0)
        for (s, w) in (("constant_with_warmup", 0.0), ("linear", 0.1))
        for m in ("full", "lora", "dora")
        for lr in ((1e-5, 1e-4) if m == "full" else (1e-3, 2e-3))
        for seed in (0, 1)
    ]
    tuning = Tuning(rows=rows, n_train=100, n_heldout=50)
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
        TuningRow("lora", "linear", 0.1, lr, 0, 0.885, loss, 1.0)
        for lr, loss in ((1e-3, 0.30), (2e-3, 0.25), (4e-3, 0.28))
    ]
    tuning = Tuning(rows=rows, n_train=100, n_heldout=1000)
    tuning.choose()
    assert tuning.chosen == {"lora": 2e-3}


def test_heldout_sample_is_disjoint_from_the_training_sample(sst2_dir):
    from labhelpers.data import load_sst2

    train_set = load_sst2("train", n=500, data_dir=sst2_dir)
    heldout = heldout_train_sample(train_set, 300, data_dir=sst2_dir)
    assert len(heldout) == 300 and not set(heldout["idx"]) & set(train_set["idx"])
    assert abs(np.mean(heldout["label"]) - np.mean(train_set["label"])) < 0.01  # both stratified


def test_tuning_never_reads_the_validation_split(small_model, tmp_path, sst2_dir):
    only_train = tmp_path / "sst2"
    only_train.mkdir()
    os.symlink(sst2_dir / "train.tsv", only_train / "train.tsv")  # no validation.tsv: reading it would fail
    model, tokenizer = small_model
    found = tune_learning_rates(
        REFERENCE, dataclasses.replace(TINY, methods=("lora",)),
        SearchSpace(grid={"lora": (1e-3, 2e-3)}, schedules=(("linear", 0.0),), n_heldout=16),
        base_model=model, tokenizer=tokenizer, config=LabConfig(data_dir=only_train, device="cpu"), progress=False,
    )  # fmt: skip
    assert [(r.method, r.lr, r.seed) for r in found.rows] == [("lora", 1e-3, 0), ("lora", 2e-3, 0)]
    assert found.n_heldout == 16 and set(found.chosen) == {"lora"}


def test_tune_options_give_the_student_size_with_the_methods_seeds_and_sentences_asked_for():
    options = TuneOptions(n_train=320, seeds=(0, 1), methods=("lora", "dora"))
    settings = options.settings()
    assert (settings.methods, settings.seeds, settings.n_train) == (("lora", "dora"), (0, 1), 320)
    assert settings.batch_size == training.default_settings("student").batch_size
    search = options.search()
    assert search.grid == {"lora": GRID["lora"], "dora": GRID["dora"]} and search.n_heldout == 1000


@pytest.mark.parametrize(
    "options, message",
    [
        (TuneOptions(methods=("lora", "qlora")), "methods"),
        (TuneOptions(seeds=()), "seeds"),
        (TuneOptions(methods=("lora",), grid={"dora": (1e-3,)}), "grid\\['lora'\\]"),
        (TuneOptions(methods=("lora",), grid={"lora": (1e-3, 0.0)}), "positive learning rates"),
    ],
    ids=["unknown-method", "no-seeds", "missing-rates", "zero-rate"],
)
def test_tune_rejects_unusable_options_by_name(options, message, monkeypatch):
    monkeypatch.setattr("labhelpers.tuning.tune_learning_rates", _never_called)
    with pytest.raises(LabConfigError, match=message):
        tune(options, progress=False)


def _never_called(*args, **kwargs):
    raise AssertionError("tune trained a model for unusable options")


def test_tune_prints_the_plan_and_the_table_and_writes_tune_results(monkeypatch, tmp_path, capsys):
    rows = [TuningRow("lora", "constant_with_warmup", 0.0, lr, 0, accuracy, 0.3, 1.0)
            for lr, accuracy in ((1e-3, 0.80), (2e-3, 0.82))]  # fmt: skip
    searched = []

    def search(functions, settings, space, **kwargs):
        searched.append((functions, settings, space))
        found = Tuning(rows=rows, n_train=settings.n_train, n_heldout=space.n_heldout)
        found.choose()
        return found

    monkeypatch.setattr("labhelpers.tuning.tune_learning_rates", search)
    options = TuneOptions(
        n_train=64, n_heldout=50, methods=("lora",), grid={"lora": (1e-3, 2e-3)}, output_dir=tmp_path
    )
    path = tune(options)
    assert path == tmp_path / TUNING_FILE
    saved = json.loads(path.read_text())
    assert saved["chosen"] == {"lora": 2e-3} and len(saved["rows"]) == 2 and saved["n_heldout"] == 50
    ((functions, settings, space),) = searched
    assert functions == REFERENCE and settings.n_train == 64 and space.grid == {"lora": (1e-3, 2e-3)}
    out = capsys.readouterr().out
    assert out.startswith("Tuning LoRA on 64 training sentences (4 steps of 16), seeds 0; scored on 50 other")
    assert "Schedules: constant, linear decay, 10 % warm-up. Learning rates: LoRA 0.001, 0.002." in out
    assert "Chosen: constant; LoRA 0.002" in out and f"Wrote {path}" in out


def test_tune_is_quiet_without_progress(monkeypatch, tmp_path, capsys):
    def search(functions, settings, space, **kwargs):
        found = Tuning(rows=[TuningRow("lora", "linear", 0.1, 1e-3, 0, 0.8, 0.3, 1.0)], n_train=64, n_heldout=50)
        found.choose()
        return found

    monkeypatch.setattr("labhelpers.tuning.tune_learning_rates", search)
    tune(TuneOptions(methods=("lora",), output_dir=tmp_path), progress=False)
    assert capsys.readouterr().out == "" and (tmp_path / TUNING_FILE).is_file()
