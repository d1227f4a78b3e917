"""Observations as files, to cross the grading boundary as data only: tensors in safetensors, facts in JSON.

The probe writes `<stem>.safetensors` and `<stem>.json` in its sandbox; the judge reads them back in a process that
never runs student code. Neither format can carry code (no pickle, no torch.load), and `read` trusts nothing: a
file too large, malformed, of an unexpected dtype, or with non-string keys is refused with ObservationError, which
the grader reports as the test's failure (never as a crash).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch

from labhelpers.probes.core import Observation

MAX_TENSOR_BYTES = 64 * 2**20
"""Largest tensor file the judge reads (the checks' tensors are a few MB at most)."""
MAX_FACT_BYTES = 4 * 2**20
"""Largest facts file the judge reads."""
MAX_DEPTH = 8
"""Deepest nesting of facts the judge accepts."""
ALLOWED_DTYPES = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool}


class ObservationError(ValueError):
    """The observation files are missing, too large or malformed (the probe was stopped, or was tampered with)."""


def write(obs: Observation, stem: str | os.PathLike) -> None:
    """Write obs as `<stem>.safetensors` and `<stem>.json` (facts last: its presence means the record is complete)."""
    from safetensors.torch import save_file

    stem = Path(stem)
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in obs.tensors.items()}
    save_file(tensors, f"{stem}.safetensors")
    text = json.dumps(obs.facts, allow_nan=False, default=repr)
    tmp = Path(f"{stem}.json.tmp")
    tmp.write_text(text)
    tmp.replace(f"{stem}.json")


def _check_facts(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ObservationError("facts nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ObservationError("facts with a non-string key")
            _check_facts(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_facts(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ObservationError("facts with a non-finite number")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise ObservationError(f"facts holding a {type(value).__name__}")


def _refuse_constant(name: str) -> Any:
    raise ObservationError(f"facts holding {name}")


def _read_bytes(folder: Path, name: str, limit: int) -> bytes:
    """Read folder/name without following a link (in the folder or as the folder), refusing more than limit bytes."""
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise ObservationError("no record folder") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        raise ObservationError(f"no {name.rsplit('.', 1)[-1]} record") from None
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ObservationError(f"the {name.rsplit('.', 1)[-1]} record is not a file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ObservationError(f"the {name.rsplit('.', 1)[-1]} record is larger than {limit // 2**20} MiB")
    return data


def read(stem: str | os.PathLike) -> Observation:
    """Read the observation written at stem, validating everything; raise ObservationError when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    stem = Path(stem)
    facts_bytes = _read_bytes(stem.parent, f"{stem.name}.json", MAX_FACT_BYTES)
    tensor_bytes = _read_bytes(stem.parent, f"{stem.name}.safetensors", MAX_TENSOR_BYTES)
    try:
        facts = json.loads(facts_bytes.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise ObservationError(f"the facts are not valid JSON ({type(error).__name__})") from None
    if not isinstance(facts, dict):
        raise ObservationError("the facts are not a JSON object")
    _check_facts(facts)
    try:
        tensors = load(tensor_bytes)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ObservationError(f"the tensors are not a valid safetensors file ({type(error).__name__})") from None
    for key, value in tensors.items():
        if value.dtype not in ALLOWED_DTYPES:
            raise ObservationError(f"tensor {key!r} has dtype {value.dtype}")
        facts_of = facts.get(key)
        if not isinstance(facts_of, dict) or list(value.shape) != facts_of.get("shape"):
            raise ObservationError(f"tensor {key!r} does not match its description")
        if str(value.dtype).removeprefix("torch.") != facts_of.get("dtype"):
            raise ObservationError(f"tensor {key!r} does not match its description")
    return Observation(tensors=dict(tensors), facts=facts)
