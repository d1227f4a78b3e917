"""load_sst2 on the real SST-2 files: counts, balance, sampling, and every bad input with its message."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from labhelpers import data
from labhelpers.data import length_grouped_order, load_sst2, make_dataloader, stratified_indices
from labhelpers.errors import LabDataError


@pytest.mark.parametrize("split, rows, positives", [("train", 67_349, 37_569), ("validation", 872, 444)])
def test_whole_splits_have_glue_row_counts_and_label_balance(sst2_dir, split, rows, positives):
    ds = load_sst2(split, data_dir=sst2_dir)
    assert ds.column_names == ["sentence", "label", "idx"]
    assert len(ds) == rows
    assert sum(ds["label"]) == positives
    assert ds["idx"][:3] == [0, 1, 2]


def test_sentences_with_quote_characters_are_read_verbatim(sst2_dir, tmp_path):
    sentences = load_sst2("train", data_dir=sst2_dir)["sentence"]
    assert "are more deeply thought through than in most ` right-thinking ' films" in sentences
    # With quoting on, a row starting with " would swallow the following lines and the count would drop.
    folder = _folder_with(tmp_path, sst2_dir, **{"validation.tsv": 'sentence\tlabel\n"quoted\t1\nnext " one\t0\n'})
    assert load_sst2("validation", data_dir=folder)["sentence"] == ['"quoted', 'next " one']


def test_lab_data_dir_is_used_when_no_folder_is_passed(sst2_dir, monkeypatch):
    monkeypatch.setenv("LAB_DATA_DIR", str(sst2_dir))
    assert len(load_sst2("validation")) == 872


@pytest.mark.parametrize("n", [1, 10, 101, 2000])
def test_sample_is_stratified_sized_and_reproducible(sst2_dir, n):
    first = load_sst2("train", n=n, data_dir=sst2_dir, seed=3)
    again = load_sst2("train", n=n, data_dir=sst2_dir, seed=3)
    other = load_sst2("train", n=n, data_dir=sst2_dir, seed=4)
    assert len(first) == n and len(set(first["idx"])) == n
    assert first["idx"] == again["idx"]
    if n >= 10:
        assert first["idx"] != other["idx"]
    # Positive share of the whole train split is 37,569 / 67,349; the sample is within one row of it.
    assert abs(sum(first["label"]) - n * 37_569 / 67_349) <= 1


def test_sample_rows_match_the_full_split(sst2_dir):
    full = load_sst2("validation", data_dir=sst2_dir)
    sample = load_sst2("validation", n=50, data_dir=sst2_dir)
    for row in sample:
        assert full[row["idx"]]["sentence"] == row["sentence"] and full[row["idx"]]["label"] == row["label"]


def test_stratified_indices_hit_exact_quotas_for_an_uneven_split():
    labels = np.array([0] * 7 + [1] * 3)
    picked = stratified_indices(labels, 5, seed=0)
    assert len(picked) == 5 and list(labels[picked]).count(1) in (1, 2)


def _folder_with(tmp_path, sst2_dir, **overrides):
    folder = tmp_path / "sst2"
    folder.mkdir()
    for name in ("train.tsv", "validation.tsv"):
        if name in overrides:
            if overrides[name] is not None:
                (folder / name).write_text(overrides[name], encoding="utf-8")
        else:
            shutil.copy(sst2_dir / name, folder / name)
    return folder


@pytest.mark.parametrize(
    "split, n, files, message",
    [
        ("test", None, {}, "Unknown SST-2 split 'test'"),
        ("dev", None, {}, "use one of train, validation"),
        ("train", 0, {}, "n=0 is not a positive whole number"),
        ("train", -5, {}, "n=-5 is not a positive whole number"),
        ("train", 2.5, {}, "n=2.5 is not a positive whole number"),
        ("validation", 873, {}, r"n=873 is larger than the validation split \(872 rows\)"),
        ("validation", None, {"validation.tsv": None}, "validation.tsv is missing"),
        ("validation", None, {"validation.tsv": ""}, "validation.tsv is empty"),
        ("validation", None, {"validation.tsv": "sentence\tlabel\n"}, "has a header but no rows"),
        ("validation", None, {"validation.tsv": "text,label\nfine,1\n"}, "not the header 'sentence<TAB>label'"),
        ("validation", None, {"validation.tsv": "sentence\tlabel\ngood\t1\nbad\t2\n"}, "line 3: expected"),
        ("validation", None, {"validation.tsv": "sentence\tlabel\ngood\n"}, "line 2: expected"),
    ],
    ids=[
        "split-test",
        "split-dev",
        "n-zero",
        "n-negative",
        "n-float",
        "n-too-large",
        "file-missing",
        "file-empty",
        "no-rows",
        "wrong-header",
        "bad-label",
        "missing-column",
    ],
)
def test_bad_input_raises_one_named_error_saying_how_to_fix(tmp_path, sst2_dir, split, n, files, message):
    folder = _folder_with(tmp_path, sst2_dir, **files)
    with pytest.raises(LabDataError, match=message):
        load_sst2(split, n=n, data_dir=folder)


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(LabDataError, match="is not a folder.*LAB_DATA_DIR"):
        load_sst2("train", data_dir=tmp_path / "nowhere")


def _no_local_data(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "PROJECT_DATA_DIR", tmp_path / "empty")


def test_offline_without_local_data_names_lab_data_dir_and_make_data(monkeypatch, tmp_path):
    _no_local_data(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(LabDataError, match="hub is off") as info:
        load_sst2("train")
    assert "LAB_DATA_DIR" in str(info.value) and "make data" in str(info.value)
    # No traceback from inside `datasets`: the error is raised before any hub call.
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_unreachable_hub_gives_the_same_advice(monkeypatch, tmp_path):
    import datasets

    _no_local_data(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):  # the network boundary: the only thing mocked
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(LabDataError, match="hub could not be reached.*LAB_DATA_DIR.*make data") as info:
        load_sst2("validation")
    assert info.value.__suppress_context__  # the library's traceback is not shown to the student


def test_project_data_folder_is_used_before_the_hub(monkeypatch, tmp_path, sst2_dir):
    monkeypatch.delenv("LAB_DATA_DIR", raising=False)
    folder = _folder_with(tmp_path, sst2_dir, **{"train.tsv": "sentence\tlabel\na\t1\nb\t0\n"})
    monkeypatch.setattr(data, "PROJECT_DATA_DIR", folder)
    assert load_sst2("train")["sentence"] == ["a", "b"]


def test_write_tsv_round_trips_awkward_sentences(tmp_path):
    sentences = ['he said "no"', "it 's ` fine '", "plain"]
    data.write_tsv(sentences, [1, 0, 1], tmp_path / "validation.tsv")
    read, labels = data.read_tsv(tmp_path / "validation.tsv")
    assert read == sentences and labels.tolist() == [1, 0, 1]


def test_dataloader_pads_each_batch_to_its_own_longest_sentence(sst2_dir, base_model_and_tokenizer):
    _, tokenizer = base_model_and_tokenizer
    ds = load_sst2("validation", n=64, data_dir=sst2_dir)
    batches = list(make_dataloader(ds, tokenizer, batch_size=16))
    assert [b["labels"].shape[0] for b in batches] == [16, 16, 16, 16]
    for batch in batches:
        lengths = batch["attention_mask"].sum(dim=1)
        assert batch["input_ids"].shape[1] == lengths.max() < 128
    assert sum(b["labels"].sum().item() for b in batches) == sum(ds["label"])


def test_shuffled_dataloader_is_reproducible(sst2_dir, base_model_and_tokenizer):
    _, tokenizer = base_model_and_tokenizer
    ds = load_sst2("validation", n=40, data_dir=sst2_dir)
    first = [b["labels"].tolist() for b in make_dataloader(ds, tokenizer, 8, shuffle=True, seed=1)]
    again = [b["labels"].tolist() for b in make_dataloader(ds, tokenizer, 8, shuffle=True, seed=1)]
    assert first == again


def test_length_grouped_order_keeps_every_index_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    order = rng.permutation(1000)[:333]
    grouped = length_grouped_order(lengths, order, batch_size=16, rng=np.random.default_rng(1))
    assert sorted(grouped.tolist()) == sorted(order.tolist())
    batches = [grouped[i : i + 16] for i in range(0, len(grouped), 16)]
    assert all(len(batch) == 16 for batch in batches[:-1]) and len(batches[-1]) == 333 % 16
    spread = np.mean([np.ptp(lengths[batch]) for batch in batches])
    random_spread = np.mean([np.ptp(lengths[order[i : i + 16]]) for i in range(0, 320, 16)])
    assert spread < random_spread / 4
    # Batches are shuffled: not one sorted run from longest to shortest.
    maxima = [lengths[batch].max() for batch in batches[:-1]]
    assert maxima != sorted(maxima, reverse=True)


def test_length_grouped_order_is_reproducible_and_rejects_bad_sizes():
    lengths = np.arange(100)
    first = length_grouped_order(lengths, np.arange(100), 8, np.random.default_rng(3))
    again = length_grouped_order(lengths, np.arange(100), 8, np.random.default_rng(3))
    assert first.tolist() == again.tolist()
    with pytest.raises(ValueError, match="batch_size=0"):
        length_grouped_order(lengths, np.arange(100), 0, np.random.default_rng(3))
