"""After a kernel restart: reload the comparison saved in the output folder instead of training for ten minutes again.

A saved comparison is reused only when it was made with the same settings, the same base model and the same code of
your functions, in this version's layout; otherwise the comparison is trained again and the line printed says why.
"""

from __future__ import annotations

import datetime

import torch.nn as nn

from labhelpers.config import LabConfig, get_config
from labhelpers.models import load_base_model
from labhelpers.training.context import LoopFunctions
from labhelpers.training.loop import model_name, run_comparison
from labhelpers.training.records import Comparison
from labhelpers.training.saved import WEIGHTS_FILE, code_digest, read_comparison, reusable
from labhelpers.training.settings import Settings


def _when(written_at: str | None) -> str:
    if not written_at:
        return "at an unknown time"
    try:
        return datetime.datetime.fromisoformat(written_at).strftime("on %Y-%m-%d at %H:%M")
    except ValueError:
        return f"at {written_at}"


def load_or_run_comparison(
    functions: LoopFunctions,
    settings: Settings,
    *,
    base_model: nn.Module | None = None,
    tokenizer=None,
    config: LabConfig | None = None,
    reuse: bool = True,
    progress: bool = True,
) -> Comparison:
    """Reload the comparison saved in the output folder when it was made exactly like this one; else run it.

    Args:
        functions, settings, base_model, tokenizer, config, progress: as for run_comparison.
        reuse: False always trains (and overwrites the saved comparison).

    Returns:
        The Comparison, with its checkpoint weights (read back from ex4_weights.safetensors, or just trained).
    """
    output_dir = (get_config() if config is None else config).output_dir
    if reuse:
        if base_model is None:
            base_model, tokenizer = load_base_model(verbose=progress)
        check = reusable(output_dir, settings, model_name(base_model), code_digest(functions))
        reasons = list(check.reasons)
        if check.reusable:
            try:
                comparison = read_comparison(output_dir)
            except (OSError, ValueError, KeyError) as error:
                reasons = [f"it cannot be read back ({type(error).__name__}: {str(error)[:200]})"]
            else:
                if progress:
                    print(
                        f"Loaded the comparison from {check.path} and {WEIGHTS_FILE}, written {_when(check.written_at)} "
                        f"with these settings, this model and this code of your functions: nothing was trained. To "
                        f"train again, pass reuse=False (or delete {check.path.name})."
                    )
                return comparison
        if check.exists and progress:
            print(f"Not reusing {check.path}: {'; '.join(reasons)}. Training.")
    return run_comparison(
        functions, settings, base_model=base_model, tokenizer=tokenizer, config=config, progress=progress
    )
