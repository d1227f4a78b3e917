"""What a comparison leaves behind: `Checkpoint`, `Run` and `Comparison`, and ex4_results.json that holds them.

The checkpoints' tensors (what rebuilds Figure 2's weights) go beside it, to ex4_weights.safetensors (training.saved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labhelpers.training.settings import Settings

RESULTS_FILE = "ex4_results.json"
RESULTS_FORMAT = 2
"""The layout of ex4_results.json and ex4_weights.safetensors; a saved comparison of another layout is not reused."""


@dataclass
class Checkpoint:
    """One run's state after a fraction of its training.

    Attributes:
        step: optimiser steps so far.
        epoch: epochs so far (e.g. 0.25).
        train_loss: mean batch loss since the previous checkpoint.
        decomposition: {layer: (ΔM, ΔD)} of each adapted layer against the pretrained weight (paper §3.2, measured
            with weights.magnitude_direction_change).
        weights: {layer: (out_features, in_features) float32 CPU tensor}, the merged query/value weights; in memory
            only (about 7 MB per checkpoint), empty when the run did not keep them.
        state: what rebuilds `weights` (training.states: the adapters' parameters, or full fine-tuning's weights);
            saved to ex4_weights.safetensors; empty when the run did not keep them.
    """

    step: int
    epoch: float
    train_loss: float
    decomposition: dict[str, tuple[float, float]]
    weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


@dataclass
class Run:
    """One method trained with one seed.

    Attributes:
        method, seed, lr: what was trained, and its peak learning rate.
        val_accuracy_per_epoch: your evaluate_accuracy after each epoch.
        train_loss: mean batch loss of each epoch.
        checkpoints: evenly spaced over training.
        trainable_params, total_params: from models.count_parameters.
        train_seconds, eval_seconds: time inside train_one_epoch and evaluate_accuracy.
        lora_config: the PEFT config's main fields, None for full fine-tuning.
    """

    method: str
    seed: int
    lr: float
    val_accuracy_per_epoch: list[float]
    train_loss: list[float]
    checkpoints: list[Checkpoint]
    trainable_params: int
    total_params: int
    train_seconds: float
    eval_seconds: float
    lora_config: dict | None

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last epoch."""
        return self.val_accuracy_per_epoch[-1]

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds

    def to_json(self) -> dict:
        """Return the run as ex4_results.json stores it (no weights)."""
        decomposition = {"step": [], "epoch": [], "layer": [], "delta_m": [], "delta_d": []}
        for checkpoint in self.checkpoints:
            for layer, (delta_m, delta_d) in checkpoint.decomposition.items():
                for key, value in zip(decomposition, (checkpoint.step, checkpoint.epoch, layer, delta_m, delta_d)):
                    decomposition[key].append(value)
        return {
            "method": self.method, "seed": self.seed, "lr": self.lr, "val_accuracy": self.val_accuracy,
            "val_accuracy_per_epoch": self.val_accuracy_per_epoch, "train_loss": self.train_loss,
            "checkpoint_step": [c.step for c in self.checkpoints],
            "checkpoint_epoch": [c.epoch for c in self.checkpoints],
            "checkpoint_train_loss": [c.train_loss for c in self.checkpoints],
            "trainable_params": self.trainable_params, "total_params": self.total_params, "seconds": self.seconds,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "lora_config": self.lora_config,
            "decomposition": decomposition,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> Run:
        """Rebuild a run (without weights) from its ex4_results.json entry."""
        rows = data["decomposition"]
        checkpoints = []
        for step, epoch, loss in zip(data["checkpoint_step"], data["checkpoint_epoch"], data["checkpoint_train_loss"]):
            decomposition = {
                layer: (m, d)
                for s, layer, m, d in zip(rows["step"], rows["layer"], rows["delta_m"], rows["delta_d"])
                if s == step
            }
            checkpoints.append(Checkpoint(step, epoch, loss, decomposition))
        return cls(
            method=data["method"], seed=data["seed"], lr=data["lr"],
            val_accuracy_per_epoch=list(data["val_accuracy_per_epoch"]), train_loss=list(data["train_loss"]),
            checkpoints=checkpoints, trainable_params=data["trainable_params"], total_params=data["total_params"],
            train_seconds=data["train_seconds"], eval_seconds=data["eval_seconds"], lora_config=data["lora_config"],
        )  # fmt: skip


@dataclass
class Comparison:
    """Every run of one comparison, the settings it used, and the pretrained weights it is measured against.

    Attributes:
        settings: the Settings used.
        runs: one Run per method and seed, in the order they ran.
        n_train, n_eval: sentences actually used.
        device: where training ran.
        model: the base model's name.
        torch_threads: torch.get_num_threads() during training.
        pretrained: {layer: (out_features, in_features) float32 CPU tensor}, the reference W0 (in memory, and in
            ex4_weights.safetensors).
        notes: what did not run, in one line each (e.g. your DoRALinear's run, when your layer could not run).
        code: a digest of your functions' source (training.saved.code_digest): a saved comparison is reused only
            for the same code.
        written_at: when the results were written (local time, ISO 8601), or None.
        results_id: names this comparison in both of its files, or None.
        results_file: where ex4_results.json was written or read, or None.
    """

    settings: Settings
    runs: list[Run]
    n_train: int
    n_eval: int
    device: str
    model: str
    torch_threads: int
    pretrained: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    code: str | None = None
    written_at: str | None = None
    results_id: str | None = None
    results_file: Path | None = None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(run.method for run in self.runs))

    def runs_of(self, method: str) -> list[Run]:
        """Return the runs of one method, in seed order."""
        return sorted((run for run in self.runs if run.method == method), key=lambda run: run.seed)

    def to_json(self) -> dict:
        """Return what ex4_results.json holds: {"config": {...}, "runs": [...]} (no weights)."""
        s = self.settings
        config = {
            "methods": list(s.methods), "seeds": list(s.seeds),
            "full_seeds": None if s.full_seeds is None else list(s.full_seeds), "num_epochs": s.num_epochs,
            "learning_rates": dict(s.learning_rates), "schedule": s.schedule, "warmup_ratio": s.warmup_ratio,
            "batch_size": s.batch_size, "n_train": self.n_train, "n_eval": self.n_eval, "checkpoints": s.checkpoints,
            "optimizer": "AdamW(weight_decay=0)", "model": self.model, "device": self.device,
            "torch_threads": self.torch_threads, "data_seed": s.data_seed, "eval_batch_size": s.eval_batch_size,
            "dropout": s.dropout,
        }  # fmt: skip
        return {
            "format": RESULTS_FORMAT, "results_id": self.results_id, "written_at": self.written_at, "code": self.code,
            "settings": s.to_json(), "config": config, "runs": [run.to_json() for run in self.runs],
            "notes": list(self.notes),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping) -> Comparison:
        """Rebuild a comparison (without weights) from a loaded ex4_results.json."""
        c = data["config"]
        settings = Settings.from_json(data["settings"]) if "settings" in data else Settings(
            methods=c["methods"], seeds=c["seeds"], full_seeds=c.get("full_seeds"),
            learning_rates=c["learning_rates"], schedule=c["schedule"],
            warmup_ratio=c["warmup_ratio"], num_epochs=c["num_epochs"], batch_size=c["batch_size"],
            n_train=c["n_train"], n_eval=c["n_eval"], checkpoints=c["checkpoints"], data_seed=c["data_seed"],
            eval_batch_size=c["eval_batch_size"], dropout=c.get("dropout"),
        )  # fmt: skip
        return cls(
            settings=settings, runs=[Run.from_json(r) for r in data["runs"]], n_train=c["n_train"],
            n_eval=c["n_eval"], device=c["device"], model=c["model"], torch_threads=c["torch_threads"],
            notes=list(data.get("notes", [])), code=data.get("code"), written_at=data.get("written_at"),
            results_id=data.get("results_id"),
        )  # fmt: skip

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Write ex4_results.json into `output_dir` (created if missing); return its path."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        self.results_file = path
        return path
