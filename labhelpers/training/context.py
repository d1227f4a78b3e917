"""What every run of a comparison shares, prepared once: your functions, the model, the data, the device."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from labhelpers.config import LabConfig, resolve_device
from labhelpers.data import load_sst2, make_dataloader
from labhelpers.errors import LabConfigError
from labhelpers.models import load_base_model
from labhelpers.seeding import forked
from labhelpers.training.settings import Settings
from labhelpers.weights import linear_weights


@dataclass(frozen=True)
class LoopFunctions:
    """Your functions of Exercise 4 (and, optionally, your layer of Exercise 2), as the comparison calls them.

    Attributes:
        make_peft_model: `make_peft_model(base_model, use_dora) -> peft.PeftModel` (not called for "full").
        train_one_epoch: `train_one_epoch(model, loader, optimizer) -> mean batch loss`.
        evaluate_accuracy: `evaluate_accuracy(model, loader) -> fraction of examples correct`.
        dora_layer: your `DoRALinear` class, or None; given, DoRA's first seed is also trained with it in place of
            PEFT's layers (the run "dora_yours").
    """

    make_peft_model: Callable[[nn.Module, bool], nn.Module]
    train_one_epoch: Callable
    evaluate_accuracy: Callable
    dora_layer: type | None = None


@dataclass(frozen=True)
class RunContext:
    """What every run of one comparison (or one learning-rate search) shares; built once by `prepare`.

    Attributes:
        functions: your loop.
        base_model, tokenizer: the pretrained model (never modified) and its tokenizer.
        train_set: the training sample (a load_sst2 Dataset).
        eval_loader: batches of the sentences accuracy is measured on, sorted by length.
        pretrained: {layer: (out_features, in_features) float32 CPU tensor}, the reference W0 of ΔM/ΔD.
        device: where every run trains.
    """

    functions: LoopFunctions
    base_model: nn.Module
    tokenizer: object
    train_set: object
    eval_loader: object
    pretrained: Mapping[str, torch.Tensor]
    device: torch.device

    @property
    def n_eval(self) -> int:
        """Sentences accuracy is measured on."""
        return len(self.eval_loader.dataset)


def validation_sample(train_set, settings: Settings, data_dir) -> object:
    """Return the comparison's evaluation sentences: a stratified sample of `settings.n_eval` validation sentences."""
    return load_sst2("validation", n=settings.n_eval, data_dir=data_dir, seed=settings.data_seed)


def prepare(
    functions: LoopFunctions,
    settings: Settings,
    eval_sample: Callable = validation_sample,
    *,
    base_model: nn.Module | None = None,
    tokenizer=None,
    config: LabConfig | None = None,
    progress: bool = True,
) -> RunContext:
    """Check your functions and the device, load the model and the data, and measure the pretrained weights once.

    Args:
        functions: your loop.
        settings: sizes (n_train, data_seed, eval_batch_size …) and the methods to run.
        eval_sample: `eval_sample(train_set, settings, data_dir) -> Dataset` of the sentences accuracy is measured on.
        base_model, tokenizer: the pretrained model and its tokenizer; both None loads the packaged MiniLM.
        config: the data folder and the device; None = get_config().
        progress: say what is loaded.

    Returns:
        A RunContext. Raises LabConfigError naming the argument when one is unusable.
    """
    if (base_model is None) != (tokenizer is None):
        raise LabConfigError(
            "pass both base_model and tokenizer (from load_base_model), or neither to load the packaged model."
        )
    # Without a config, load_sst2 looks for the data itself (and names LAB_DATA_DIR when that folder is unusable).
    data_dir = None if config is None else config.data_dir
    device = resolve_device(None if config is None else config.device)
    if base_model is None:
        base_model, tokenizer = load_base_model(verbose=progress)
    # Try make_peft_model once per adapter now (a fraction of a second on a copy), not after minutes of training.
    with forked():
        for method in ("lora", "dora"):
            if method in settings.methods:
                peft_model_of(functions, copy.deepcopy(base_model), use_dora=method == "dora")
    train_set = load_sst2("train", n=settings.n_train, data_dir=data_dir, seed=settings.data_seed)
    eval_set = eval_sample(train_set, settings, data_dir)
    if settings.checkpoints > settings.steps(len(train_set)):
        raise LabConfigError(
            f"checkpoints={settings.checkpoints} is more than the {settings.steps(len(train_set))} optimiser steps of "
            "a run: use fewer checkpoints or more training sentences."
        )
    # Sentences of similar length in one batch: dynamic padding then pads little, and accuracy ignores the order.
    eval_set = eval_set.select(np.argsort([len(s) for s in eval_set["sentence"]], kind="stable"))
    eval_loader = make_dataloader(eval_set, tokenizer, settings.eval_batch_size)
    return RunContext(
        functions=functions, base_model=base_model, tokenizer=tokenizer,
        train_set=train_set, eval_loader=eval_loader, pretrained=linear_weights(base_model), device=device,
    )  # fmt: skip


def peft_model_of(functions: LoopFunctions, model: nn.Module, use_dora: bool) -> nn.Module:
    """Return make_peft_model(model, use_dora), after checking that it is a PEFT model of the kind asked for.

    Args:
        functions: your loop (its make_peft_model).
        model: a fresh copy of the pretrained model with its new head (adapted in place by PEFT).
        use_dora: DoRA (True) or LoRA (False).

    Returns:
        The PeftModel. Raises LabConfigError saying what came back when it is not usable.
    """
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    what = f"make_peft_model(model, use_dora={use_dora})"
    peft_model = functions.make_peft_model(model, use_dora)
    if not isinstance(peft_model, PeftModel):
        raise LabConfigError(f"{what} returned {type(peft_model).__name__}, not a peft.PeftModel: run its check cell.")
    if peft_model.get_base_model() is not model:
        raise LabConfigError(f"{what} wrapped another model than the one it was given: run its check cell.")
    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    if not layers or any(bool(layer.lora_magnitude_vector) != use_dora for layer in layers):
        raise LabConfigError(
            f"{what} built {'no adapters' if not layers else 'the other kind of adapter'}: run its check cell."
        )
    return peft_model
