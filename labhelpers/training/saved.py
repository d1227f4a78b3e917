"""A comparison on disk: ex4_results.json and, beside it, the checkpoints Figure 2 is rebuilt from (safetensors).

`save_comparison` writes both files; `read_comparison` reads them back with every checkpoint's merged weights rebuilt
(training.states), so that Figure 2 can be drawn after a kernel restart without training again; `reusable` says
whether a saved comparison was made with given settings, model and code, and if not, why not.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import marshal
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from labhelpers.training.context import LoopFunctions
from labhelpers.training.records import RESULTS_FILE, RESULTS_FORMAT, Comparison
from labhelpers.training.settings import Settings
from labhelpers.training.states import weights_from_state

WEIGHTS_FILE = "ex4_weights.safetensors"
"""Beside ex4_results.json: W0, and per run and checkpoint the adapters' parameters (full fine-tuning: the weights)."""
IGNORED_SETTINGS = ("gradient_steps",)
"""Settings that do not change a comparison (Exercise 3's run), so they do not stop a saved one from being reused."""


def _source(obj) -> bytes:
    """Return the source of a function or class, or (when Python cannot find it) its compiled code."""
    try:
        return inspect.getsource(obj).encode()
    except (OSError, TypeError):
        if inspect.isclass(obj):
            return b"".join(_source(v) for _, v in sorted(vars(obj).items()) if inspect.isfunction(v))
        code = getattr(obj, "__code__", None)
        return marshal.dumps(code) if code is not None else repr(obj).encode()


def code_digest(functions: LoopFunctions) -> str:
    """Return a digest of the source of your functions (and layer): results of other code are never reused."""
    digest = hashlib.sha256()
    for part in (functions.make_peft_model, functions.train_one_epoch, functions.evaluate_accuracy):
        digest.update(_source(part) + b"\0")
    if functions.dora_layer is not None:
        digest.update(b"layer\0" + _source(functions.dora_layer))
    return digest.hexdigest()[:16]


def save_comparison(comparison: Comparison, output_dir: str | os.PathLike) -> list[Path]:
    """Write ex4_results.json and, when every checkpoint kept its state, ex4_weights.safetensors.

    Args:
        comparison: what run_comparison built (its written_at and results_id are set here).
        output_dir: the folder (created if missing).

    Returns:
        The paths written, ex4_results.json first.
    """
    from safetensors.torch import save_file

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    comparison.written_at = datetime.datetime.now().isoformat(timespec="seconds")
    comparison.results_id = uuid.uuid4().hex
    weights = folder / WEIGHTS_FILE
    checkpoints = [(run, k, c) for run in comparison.runs for k, c in enumerate(run.checkpoints)]
    paths = []
    if comparison.pretrained and all(c.state for _, _, c in checkpoints):
        tensors = {f"pretrained/{layer}": W.contiguous() for layer, W in comparison.pretrained.items()}
        for run, k, checkpoint in checkpoints:
            for key, tensor in checkpoint.state.items():
                tensors[f"{run.method}/{run.seed}/{k}/{key}"] = tensor.contiguous()
        metadata = {"format": str(RESULTS_FORMAT), "results_id": comparison.results_id}
        save_file(tensors, str(weights), metadata=metadata)
        paths.append(weights)
    elif weights.exists():
        weights.unlink()  # it belongs to an older comparison: never leave it beside these results
    paths.insert(0, comparison.write(folder))
    return paths


def read_comparison(output_dir: str | os.PathLike) -> Comparison:
    """Read a saved comparison back, with the pretrained weights and every checkpoint's merged weights rebuilt.

    Args:
        output_dir: the folder holding ex4_results.json and ex4_weights.safetensors.

    Returns:
        The Comparison, as run_comparison returned it (weights included). Raises ValueError when the two files do
        not belong together or are of another layout, OSError when one is missing.
    """
    from safetensors import safe_open

    folder = Path(output_dir)
    data = json.loads((folder / RESULTS_FILE).read_text())
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{RESULTS_FILE} has layout {data.get('format', 1)}, this lab reads {RESULTS_FORMAT}")
    comparison = Comparison.from_json(data)
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
        if (handle.metadata() or {}).get("results_id") != comparison.results_id:
            raise ValueError(f"{WEIGHTS_FILE} was written by another comparison than {RESULTS_FILE}")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is no dict
    comparison.pretrained = {
        k.removeprefix("pretrained/"): v for k, v in tensors.items() if k.startswith("pretrained/")
    }
    for run in comparison.runs:
        for k, checkpoint in enumerate(run.checkpoints):
            prefix = f"{run.method}/{run.seed}/{k}/"
            checkpoint.state = {key[len(prefix) :]: v for key, v in tensors.items() if key.startswith(prefix)}
            checkpoint.weights = weights_from_state(checkpoint.state, comparison.pretrained)
            if set(checkpoint.weights) != set(comparison.pretrained):
                raise ValueError(f"{WEIGHTS_FILE} lacks weights of {run.method} seed {run.seed}, checkpoint {k + 1}")
    comparison.results_file = folder / RESULTS_FILE
    return comparison


@dataclass(frozen=True)
class SavedCheck:
    """Whether a saved comparison can stand for a new run, and why not.

    Attributes:
        path: ex4_results.json.
        reasons: what differs (empty: reusable); a missing file gives no reason and `exists` False.
        exists: whether ex4_results.json is there at all.
        written_at: when it was written, if known.
    """

    path: Path
    reasons: tuple[str, ...]
    exists: bool
    written_at: str | None = None

    @property
    def reusable(self) -> bool:
        return self.exists and not self.reasons


def _settings_differences(saved: dict, wanted: dict) -> list[str]:
    names = [n for n in wanted if n not in IGNORED_SETTINGS and saved.get(n) != wanted[n]]
    return [f"{n} {saved.get(n)!r} there, {wanted[n]!r} now" for n in names]


def reusable(output_dir: str | os.PathLike, settings: Settings, model: str, code: str) -> SavedCheck:
    """Tell whether the comparison saved in `output_dir` was made with these settings, model and code.

    Args:
        output_dir: the folder of ex4_results.json.
        settings: the settings of the run about to start.
        model: the base model's name (Comparison.model).
        code: code_digest of the functions about to be used.

    Returns:
        A SavedCheck; reasons name every difference (layout, settings, model, code, the weights file).
    """
    path = Path(output_dir) / RESULTS_FILE
    if not path.is_file():
        return SavedCheck(path, (), exists=False)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return SavedCheck(path, (f"it cannot be read ({type(error).__name__})",), exists=True)
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        layout = data.get("format", 1) if isinstance(data, dict) else "unknown"
        return SavedCheck(
            path, (f"it has the layout of an older version of the lab ({layout}, not {RESULTS_FORMAT})",), True
        )
    reasons = _settings_differences(data.get("settings", {}), settings.to_json())
    if data.get("config", {}).get("model") != model:
        reasons.append(f"it trained another model ({data.get('config', {}).get('model')})")
    if data.get("code") != code:
        reasons.append("your functions (or your DoRALinear) have changed since")
    if not (path.parent / WEIGHTS_FILE).is_file():
        reasons.append(f"{WEIGHTS_FILE} is missing beside it")
    return SavedCheck(path, tuple(reasons), exists=True, written_at=data.get("written_at"))
