"""What every probe shares: the record of observations, the one way to call student code, the random-state policy.

A probe never judges. It calls the student's function or class on inputs built from a spec (`cases(spec)`, the same
on both sides of the grading boundary), and records what it sees: outputs, gradients, attributes (shape, dtype,
requires_grad …), parameter counts, exceptions with their messages. Everything it records is data — tensors and
JSON-able facts — so that, when grading, it can cross from the sandbox to the judge as safetensors and JSON.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from labhelpers.seeding import forked, reseed_cpu

MAX_ELEMENTS = 1_000_000
"""Largest tensor a probe records (elements); a bigger answer is recorded by its description alone."""
MAX_TEXT = 600
"""Longest exception message a probe records (characters)."""

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
"""The dtypes a spec may name, by name (specs are JSON)."""


def dtype_name(dtype: torch.dtype) -> str:
    """Return 'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


class ReferenceUnavailable(RuntimeError):
    """Raised in the grading sandbox when an answer calls the lab's reference code or PEFT's DoRA layer.

    Graded answers must compute their results themselves: those modules are not mounted in the probe's sandbox
    (PEFT's DoRA layer is replaced by a stub that raises this).
    """


class StudentError(Exception):
    """Student code raised (or returned something unusable); the probe stops the case and records it."""

    def __init__(self, what: str, error: BaseException):
        super().__init__(what)
        self.what = what
        self.error = error


@dataclass
class Observation:
    """What a probe saw, as data: named tensors and JSON-able facts (plus, in the notebook only, live exceptions).

    Attributes:
        tensors: {key: tensor}, plain CPU tensors.
        facts: {key: JSON-able value} — numbers, strings, booleans, None, lists and dicts of those.
        exceptions: {key of an "error" fact: the exception itself}; never serialised: in the notebook the check
            raises its AssertionError *from* it, so the student sees the frames of their own code.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    exceptions: dict[str, BaseException] = field(default_factory=dict)

    def tensor(self, key: str, value: torch.Tensor) -> None:
        """Record a plain, detached CPU copy of value under key (only its description if it is too large)."""
        self.facts[key] = describe(value)
        if isinstance(value, torch.Tensor) and value.numel() <= MAX_ELEMENTS:
            self.tensors[key] = plain(value)

    def error(self, key: str, failure: StudentError) -> None:
        """Record that student code failed: where, the exception's type and message."""
        error = failure.error
        self.facts[key] = {
            "what": failure.what,
            "type": type(error).__name__,
            "message": str(error)[:MAX_TEXT],
        }
        self.exceptions[key] = error

    def get_tensor(self, key: str) -> torch.Tensor | None:
        return self.tensors.get(key)


def plain(value: torch.Tensor) -> torch.Tensor:
    """Return a detached, contiguous CPU copy of a tensor as a plain torch.Tensor (not a subclass)."""
    with torch._C.DisableTorchFunctionSubclass():
        return value.detach().to("cpu").clone().contiguous().as_subclass(torch.Tensor)


def describe(value: Any) -> dict[str, Any]:
    """Describe any value as JSON-able facts: its kind and, for a tensor, shape, dtype, device, grad flags."""
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            return {
                "kind": "parameter" if isinstance(value, torch.nn.Parameter) else "tensor",
                "shape": list(value.shape),
                "dtype": dtype_name(value.dtype),
                "device": str(value.device),
                "requires_grad": bool(value.requires_grad),
                "finite": bool(torch.isfinite(value.detach()).all()) if value.is_floating_point() else True,
            }
    if value is None:
        return {"kind": "none"}
    if isinstance(value, bool):
        return {"kind": "bool", "value": value}
    if isinstance(value, numbers.Real):
        number = float(value)
        return {
            "kind": "number",
            "type": type(value).__name__,
            "value": number if math.isfinite(number) else str(number),
        }
    if isinstance(value, (tuple, list)):
        return {"kind": "sequence", "type": type(value).__name__, "length": len(value)}
    if isinstance(value, torch.nn.Module):
        return {"kind": "module", "type": type(value).__name__}
    return {"kind": "other", "type": type(value).__name__, "callable": callable(value)}


def call(fn: Callable, *args: Any, what: str, **kwargs: Any) -> Any:
    """Call student code: its result, or StudentError carrying the exception and what was being done.

    Every call into student code goes through here — functions, constructors, forward passes, backward passes,
    `train()`/`eval()`, attribute reads that may run a property — so that a failure is recorded, never fatal.
    """
    __tracebackhide__ = True
    if not callable(fn):
        raise StudentError(what, TypeError(f"expected a function or class but got {describe(fn)['kind']}"))
    try:
        return fn(*args, **kwargs)
    except (Exception, SystemExit) as error:  # whatever student code raises is recorded the same way
        raise StudentError(what, error) from error


def attribute(obj: Any, name: str, what: str) -> Any:
    """Read obj.name through `call` (a property is student code); a missing attribute reads as MISSING."""
    __tracebackhide__ = True
    return call(lambda: getattr(obj, name, MISSING), what=f"reading {what}.{name}")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
"""An attribute the student's object does not have."""


@contextmanager
def isolated(seed: int | None = None) -> Iterator[None]:
    """Run a probe with its own random state and one CPU thread; leave the caller's state as it was.

    The one random-state and thread policy of every check: the notebook's generators are forked (and restored
    afterwards), and torch runs on one thread, since checks compute thousands of tiny products where a thread
    pool's start-up dominates (measured 40x slower than one thread on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    with forked(seed):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def reseed(seed: int) -> None:
    """Seed the CPU generator that nn.Linear's init and dropout draw from (inside `isolated`), cheaply."""
    reseed_cpu(seed)


def randn(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Draw a standard normal tensor from generator in float64, then cast (the same values for every dtype)."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)


def rand(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Draw a uniform [0, 1) tensor from generator in float64, then cast."""
    return torch.rand(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)


def _normalised(value: Any) -> Any:
    """Turn a spec argument into plain data: torch dtypes into names, sequences into tuples."""
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, (list, tuple)):
        return tuple(_normalised(v) for v in value)
    return value


@dataclass(frozen=True)
class Spec:
    """The inputs a check asks for, as data: seeds, shapes, dtypes, sizes (JSON when grading).

    Subclasses add their fields, each with the default the notebook's visible check uses. Both sides of the grading
    boundary build the same inputs from a spec (see each probe module's `cases`).
    """

    seeds: tuple[int, ...] = (0,)

    @classmethod
    def make(cls, **arguments: Any):
        """Build a spec from a check's keyword arguments (lists, tuples, torch dtypes), validating them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(arguments) - names)
        if unknown:
            raise TypeError(
                f"unexpected argument(s) {', '.join(unknown)}; this check takes {', '.join(sorted(names))}"
            )
        spec = cls(**{name: _normalised(value) for name, value in arguments.items()})
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise ValueError on an argument no probe can use (subclasses extend it)."""
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ValueError(f"seeds={self.seeds!r}: give at least one non-negative whole number")
        for name in ("dtype", "dtypes"):
            if hasattr(self, name):
                values = getattr(self, name)
                for value in values if isinstance(values, tuple) else (values,):
                    if value not in DTYPES:
                        raise ValueError(f"{name}={values!r}: use {', '.join(DTYPES)}")
        if hasattr(self, "shapes"):
            shapes = self.shapes
            if not shapes or not all(
                len(shape) == 2 and all(isinstance(n, int) and n >= 1 for n in shape) for shape in shapes
            ):
                raise ValueError(f"shapes={shapes!r}: give (out_features, in_features) pairs of positive integers")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        return cls.make(**data)

    def with_seeds(self, seeds: Sequence[int]):
        """Return the same spec with other seeds (the grader draws them from its secret)."""
        return dataclasses.replace(self, seeds=tuple(int(s) for s in seeds))
