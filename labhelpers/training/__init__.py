"""Exercise 4: full fine-tuning, LoRA and DoRA trained by your loop, per seed, with checkpoints.

- settings.py: `Settings`, the lab's sizes (`default_settings`) and learning rates;
- context.py: your functions (`LoopFunctions`) and what every run shares (`prepare`);
- loop.py: `run_comparison` and the one run it repeats (`train_run`);
- your_layer.py: the run of DoRA with your own DoRALinear ("dora_yours");
- states.py: what a checkpoint keeps, and the merged weights rebuilt from it;
- records.py, saved.py: `Checkpoint`, `Run`, `Comparison`, ex4_results.json and ex4_weights.safetensors;
- reuse.py: `load_or_run_comparison`, which reloads a saved comparison of the same settings and code.

Summaries and their wording are in labhelpers.results, the choice of learning rates in labhelpers.tuning.
"""

from labhelpers.training.context import LoopFunctions, RunContext, prepare, validation_sample
from labhelpers.training.loop import run_comparison, train_run
from labhelpers.training.records import RESULTS_FILE, RESULTS_FORMAT, Checkpoint, Comparison, Run
from labhelpers.training.reuse import load_or_run_comparison
from labhelpers.training.saved import WEIGHTS_FILE, read_comparison
from labhelpers.training.settings import (
    LABELS,
    LEARNING_RATES,
    METHODS,
    SCHEDULE,
    SCHEDULES,
    SIZES,
    WARMUP_RATIO,
    YOUR_LAYER,
    Settings,
    default_settings,
    schedule_name,
)

__all__ = [
    "LABELS",
    "LEARNING_RATES",
    "METHODS",
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "SCHEDULE",
    "SCHEDULES",
    "SIZES",
    "WARMUP_RATIO",
    "WEIGHTS_FILE",
    "YOUR_LAYER",
    "Checkpoint",
    "Comparison",
    "LoopFunctions",
    "Run",
    "RunContext",
    "Settings",
    "default_settings",
    "load_or_run_comparison",
    "prepare",
    "read_comparison",
    "run_comparison",
    "schedule_name",
    "train_run",
    "validation_sample",
]
