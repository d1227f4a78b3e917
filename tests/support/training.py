"""Exercise 4's runs for the tests: the lab's reference loop, a tiny comparison and a 2-layer BERT of seconds per run."""

from __future__ import annotations

import functools

import torch

from labhelpers import training
from labhelpers.checks.finetune import (
    reference_evaluate_accuracy,
    reference_make_peft_model,
    reference_train_one_epoch,
)
from labhelpers.config import LabConfig
from labhelpers.seeding import forked

REFERENCE = training.LoopFunctions(reference_make_peft_model, reference_train_one_epoch, reference_evaluate_accuracy)
"""The lab's reference make_peft_model, train_one_epoch and evaluate_accuracy (labhelpers.checks.finetune)."""

TINY = training.Settings(seeds=(0,), n_train=32, n_eval=16, checkpoints=2)
"""One seed of every method, 2 optimiser steps, 2 checkpoints, 16 validation sentences."""


def small_bert(tokenizer):
    """Return a freshly initialised 2-layer BERT classifier (hidden 16) for MiniLM's tokenizer, in eval mode."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=128, num_labels=2)  # fmt: skip
    with forked(0):
        return BertForSequenceClassification(config).eval()


def comparison_on_cpu(
    settings, model_and_tokenizer, sst2_dir, output_dir, train=reference_train_one_epoch, layer=None, **kwargs
):
    """Run a comparison on the CPU with the reference loop (or another `train` function, and a DoRA layer), quietly."""
    model, tokenizer = model_and_tokenizer
    functions = training.LoopFunctions(reference_make_peft_model, train, reference_evaluate_accuracy, layer)
    return training.run_comparison(
        functions, settings, base_model=model, tokenizer=tokenizer,
        config=LabConfig(data_dir=sst2_dir, output_dir=output_dir, device="cpu"), progress=False, **kwargs,
    )  # fmt: skip


def unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    """Tell whether every tensor of the model's state dict equals `before`'s."""
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@functools.cache
def solution_layer() -> type:
    """Return the solutions notebook's DoRALinear (Exercise 2's model answer), loaded as the benchmark loads it."""
    from labhelpers.assignment import SOURCE_NOTEBOOK
    from labhelpers.bench.loader import load_classes

    return load_classes(SOURCE_NOTEBOOK)["DoRALinear"]
