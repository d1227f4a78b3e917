"""Exercise 4: full fine-tuning, LoRA and DoRA trained by your loop, per seed, with checkpoints.

- settings.py: `Settings`, the lab's sizes (`default_settings`) and learning rates;
- records.py: `Checkpoint`, `Run`, `Comparison`, and ex4_results.json;
- loop.py: `run_comparison` and the one run it repeats (`prepare` once, then `train_run` per method and seed).

Summaries and their wording are in labhelpers.results, the choice of learning rates in labhelpers.tuning.
"""

from labhelpers.training.context import LoopFunctions, RunContext, prepare, validation_sample
from labhelpers.training.loop import run_comparison, train_run
from labhelpers.training.records import RESULTS_FILE, Checkpoint, Comparison, Run
from labhelpers.training.settings import (
    LABELS,
    LEARNING_RATES,
    METHODS,
    SCHEDULE,
    SCHEDULES,
    WARMUP_RATIO,
    Settings,
    default_settings,
    schedule_name,
)

__all__ = [
    "LABELS",
    "LEARNING_RATES",
    "METHODS",
    "RESULTS_FILE",
    "SCHEDULE",
    "SCHEDULES",
    "WARMUP_RATIO",
    "Checkpoint",
    "Comparison",
    "LoopFunctions",
    "Run",
    "RunContext",
    "Settings",
    "default_settings",
    "prepare",
    "run_comparison",
    "schedule_name",
    "train_run",
    "validation_sample",
]
