"""The packaged pretrained MiniLM loads offline, runs a real batch, and bad names fail clearly."""

from __future__ import annotations

import pytest
import torch

from labhelpers.data import load_sst2, make_dataloader
from labhelpers.errors import LabModelError
from labhelpers.models import count_parameters, load_base_model, packaged_model_path


def test_default_model_is_the_pretrained_packaged_minilm(base_model_and_tokenizer):
    model, tokenizer = base_model_and_tokenizer
    assert (packaged_model_path() / "model.safetensors").is_file()
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384 and model.num_labels == 2
    names = [n for n, _ in model.named_modules()]
    assert sum(n.endswith("attention.self.query") for n in names) == 6
    assert sum(n.endswith("attention.self.value") for n in names) == 6
    # Pretrained, not random: the word embedding of [CLS] is the checkpoint's (a random init would not repeat).
    again, _ = load_base_model(verbose=False)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, again.bert.embeddings.word_embeddings.weight)
    assert tokenizer("a fine movie")["input_ids"][0] == tokenizer.cls_token_id


def test_forward_pass_on_a_tokenised_sst2_batch(base_model_and_tokenizer, sst2_dir):
    model, tokenizer = base_model_and_tokenizer
    batch = next(iter(make_dataloader(load_sst2("validation", n=8, data_dir=sst2_dir), tokenizer, batch_size=8)))
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (8, 2) and torch.isfinite(out.logits).all()
    assert out.loss.item() > 0


def test_load_report_is_one_plain_sentence(capsys):
    load_base_model()
    printed = capsys.readouterr()
    assert printed.out.count("\n") == 1
    assert "all-MiniLM-L6-v2" in printed.out and "classification head" in printed.out
    assert "LOAD REPORT" not in printed.out + printed.err and "MISSING" not in printed.out + printed.err


def test_local_folder_can_be_chosen_by_name_or_lab_model(monkeypatch, capsys):
    folder = str(packaged_model_path())
    model, _ = load_base_model(folder, num_labels=3)
    assert model.num_labels == 3
    monkeypatch.setenv("LAB_MODEL", folder)
    load_base_model()
    assert folder in capsys.readouterr().out


@pytest.mark.parametrize("name", ["no-such-org/no-such-model", "/no/such/folder"])
def test_unknown_model_raises_lab_model_error(name):
    with pytest.raises(LabModelError, match="Could not load the model"):
        load_base_model(name, verbose=False)


def test_count_parameters_counts_trainable_and_total(base_model_and_tokenizer):
    model, _ = base_model_and_tokenizer
    trainable, total = count_parameters(model)
    assert trainable == total == sum(p.numel() for p in model.parameters()) > 22_000_000
