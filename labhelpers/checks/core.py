"""What every judge shares: named tolerances, comparisons, known mistakes, and the failure every check raises.

A judge reads a probe's Observation (labhelpers.probes) and the spec the inputs were built from, computes the
references itself (PEFT, autograd, the definitions) and either returns the one-line summary of a pass or raises
CheckFailed. Every message reads in one order (messages.verdict): the diagnosis and the concept in words first, with where to
read about it (the paper's section, PEFT, the exercise's text); then what was expected and what was got; the tolerance
last. A message teaches the idea and never hands over a line of the model answer. A judge never calls student code:
when grading it runs in a process that has never loaded any.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from labhelpers.checks.messages import (
    Lesson,
    describe_facts,
    lesson_for,
    sentence,
    sentences,
    shape_diagnosis,
    shape_text,
    tolerance_text,
    verdict,
)
from labhelpers.checks.noted import note_mistakes
from labhelpers.probes.core import Observation


@dataclass(frozen=True)
class Tolerance:
    """Allowed |actual − expected| <= atol · max(1, max|expected|) + rtol · |expected|, per element."""

    rtol: float
    atol: float


# Round-off of a sum grows with the size of its terms, so an element near zero in a tensor of large values gets an
# absolute tolerance in proportion (the max(1, max|expected|) above). Checks run in float64 by default: there any
# correct formula (loops, einsum, an epsilon in the norm, a merged weight instead of PEFT's reuse of the base output)
# agrees with PEFT to ~1e-13 while every known mistake is off by O(1). Lower precisions get the usual round-off
# bounds (cf. torch.testing.assert_close), widened for the sums over in_features in a linear layer.
FLOAT64 = Tolerance(rtol=1e-7, atol=1e-9)
FLOAT32 = Tolerance(rtol=1e-4, atol=1e-5)
FLOAT16 = Tolerance(rtol=1e-2, atol=1e-3)
BFLOAT16 = Tolerance(rtol=5e-2, atol=1e-2)
EXACT = Tolerance(rtol=0.0, atol=0.0)
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: FLOAT64,
    torch.float32: FLOAT32,
    torch.float16: FLOAT16,
    torch.bfloat16: BFLOAT16,
}
NUMBER_RTOL = 1e-6
"""Relative tolerance of a returned Python float against its float64 reference (losses, ΔM, ΔD)."""
NUMBER_RTOL_FLOAT32 = 1e-4
"""The same, when the student's tensors were float32."""
NUMBER_ATOL = 1e-9
"""Absolute tolerance of a returned Python float near zero."""
SETTING_RTOL = 1e-12
"""Relative tolerance of a setting the student stores (scaling, dropout probability): a float computed the same way."""


class CheckFailed(AssertionError):
    """A check's verdict: the answer is wrong, and this message says how.

    Attributes:
        cause: key of the Observation's "error" fact when the failure is an exception in student code (in the
            notebook the AssertionError is raised from that exception, so its traceback shows the student's frames).
        unavailable: True when the answer called reference code that graded answers may not use.
        missing: True when what was to be judged was never recorded (the probe stopped before it, usually at an
            exception in student code, which then explains the failure better).
        mistakes: the names (Mistake.name) of the known mistakes the message explains, for the class report; the
            grader adds those that `explain` wrote into the message while it judged (checks.noted).
    """

    def __init__(self, message: str, cause: str | None = None, unavailable: bool = False, missing: bool = False,
                 mistakes: Sequence[str] = ()):  # fmt: skip
        super().__init__(sentence(message))
        self.cause = cause
        self.unavailable = unavailable
        self.missing = missing
        self.mistakes = tuple(mistakes)


def tolerance(dtype: torch.dtype) -> Tolerance:
    """Return the tolerance of dtype; other dtypes (integers …) compare exactly."""
    return TOLERANCES.get(dtype, EXACT)


def _coarser(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """Return the dtype with the looser tolerance: a float32 answer is judged with float32's round-off."""
    return a if tolerance(a).rtol >= tolerance(b).rtol else b


def _bound(
    actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return actual and expected in float64, and the allowed |difference| per element."""
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(e).all()):
        raise ValueError("the reference is not finite; this is a bug in the check, not in your code")
    scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
    return a, e, tol.atol * scale + tol.rtol * e.abs()


def is_close(actual: Any, expected: torch.Tensor, tol: Tolerance | None = None) -> bool:
    """Tell whether actual is a finite tensor of expected's shape within the tolerance (no message)."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return False
    if not bool(torch.isfinite(expected).all()) or not bool(torch.isfinite(actual).all()):
        return False
    a, e, bound = _bound(actual, expected, tol or tolerance(_coarser(actual.dtype, expected.dtype)))
    return bool(((a - e).abs() <= bound).all())


def numbers_close(actual: float, expected: float, rtol: float = NUMBER_RTOL) -> bool:
    """Tell whether two Python floats agree (relative tolerance, absolute near zero)."""
    return math.isfinite(actual) and math.isclose(actual, expected, rel_tol=rtol, abs_tol=NUMBER_ATOL)


def index_of(flat_index: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Turn a flat index into a tuple index of a tensor of the given shape."""
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def number_tolerance_text(rtol: float) -> str:
    """Return the sentence that ends a message comparing returned numbers."""
    return f"Tolerance: relative {rtol:g} (absolute {NUMBER_ATOL:g} near zero)"


def _expect_shape(got: tuple[int, ...], shape: Sequence[int | None], what: str, hint: str) -> None:
    """Fail unless got matches shape (None matches any size), saying whether broadcasting or a reduction went wrong."""
    if len(got) == len(shape) and all(e is None or a == e for a, e in zip(got, shape, strict=True)):
        return
    why = shape_diagnosis(got, [1 if s is None else s for s in shape])
    raise CheckFailed(verdict(sentences(why, hint), f"{what}: expected shape {shape_text(shape)}, got {got}"))


def expect_tensor(
    obs: Observation,
    key: str,
    what: str,
    shape: Sequence[int | None] | None = None,
    dtype: torch.dtype | None = None,
    hint: str = "",
) -> torch.Tensor:
    """Check that the value recorded under key is a finite tensor of the expected shape and dtype; return it.

    Checks go type → shape → dtype → finite values, each failure naming the likely mistake before the evidence.

    Args:
        obs: the probe's record.
        key: the key the probe recorded the value under.
        what: how to name it in messages, e.g. "the magnitude returned by decompose_weight".
        shape: expected shape; None anywhere in it matches any size.
        dtype: expected dtype, or None to accept any.
        hint: the likely mistake, added to every failure's diagnosis.

    Returns:
        The recorded tensor.
    """
    facts = obs.facts.get(key)
    if facts is None:
        raise CheckFailed(f"{what} was not recorded: the check stopped before it.", missing=True)
    _expect_kind(facts, what, hint)
    got = tuple(facts["shape"])
    if shape is not None:
        _expect_shape(got, shape, sentence(what), hint)
    if dtype is not None and facts["dtype"] != str(dtype).removeprefix("torch."):
        raise CheckFailed(
            verdict(
                sentences(
                    "new tensors must keep the dtype of the inputs: the check runs in float64 as well as float32, "
                    "PyTorch creates float32 tensors unless told otherwise, and a conversion (to float or double) "
                    "changes the dtype",
                    hint,
                ),
                f"{what}: expected dtype {dtype}, got torch.{facts['dtype']}",
            )
        )
    value = obs.tensors.get(key)
    if value is None:
        raise CheckFailed(
            verdict(sentences(f"{what} is larger than any check expects", hint), f"Got {math.prod(got):,} elements")
        )
    _expect_finite(value, what, hint)
    return value


def _expect_kind(facts: Mapping[str, Any], what: str, hint: str) -> None:
    """Fail unless the recorded value is a tensor: name a missing return, or what came back instead."""
    if facts.get("kind") == "none":
        raise CheckFailed(
            verdict(sentences(f"{what} is None: did you forget a `return` statement? A function that ends without "
                              f"one returns None", hint))
        )  # fmt: skip
    if facts.get("kind") not in ("tensor", "parameter"):
        raise CheckFailed(
            verdict(
                sentences(
                    f"{what} should be a torch.Tensor, computed with torch operations on the input tensors (a NumPy "
                    f"array or a Python number leaves the dtype, the device and autograd behind)",
                    hint,
                ),
                f"Expected a tensor, got {describe_facts(facts)}",
            )
        )


def _expect_finite(value: torch.Tensor, what: str, hint: str) -> None:
    """Fail when a floating-point tensor holds NaN or infinite values, saying how many and where the first is."""
    if not value.is_floating_point() or bool(torch.isfinite(value).all()):
        return
    bad = ~torch.isfinite(value)
    n_nan = int(torch.isnan(value).sum())
    first = index_of(int(bad.reshape(-1).nonzero()[0]), value.shape) if value.dim() else ()
    raise CheckFailed(
        verdict(
            sentences(
                "non-finite values usually come from a division by zero, such as a division by the norm of an "
                "all-zero row",
                hint,
            ),
            f"{what} contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values (first at index {first})",
        )
    )


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, what: str, hint: str = "", tol: Tolerance | None = None
) -> None:
    """Fail unless actual matches expected within the tolerance of the lower-precision dtype of the two.

    Args:
        actual: the student's tensor (already of the right shape: see expect_tensor).
        expected: the reference tensor.
        what: what was compared, e.g. "DoRALinear output (eval mode, bias=True)".
        hint: the likely mistake: it leads the failure message, before the numbers.
        tol: overrides the dtype's tolerance.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise CheckFailed(verdict(hint, f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}"))
    dtype = _coarser(actual.dtype, expected.dtype)
    tol = tol or tolerance(dtype)
    a, e, bound = _bound(actual, expected, tol)
    diff = (a - e).abs()
    if bool((diff <= bound).all()):
        return
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / e.abs())
    i_abs = int(diff.reshape(-1).argmax())
    i_rel = int(rel.reshape(-1).argmax())
    evidence = (
        f"{what} does not match the reference: expected {float(e.reshape(-1)[i_abs]):.6g}, got "
        f"{float(a.reshape(-1)[i_abs]):.6g} at index {index_of(i_abs, e.shape)}, the largest difference "
        f"({float(diff.reshape(-1)[i_abs]):.3g}); the largest relative difference is {float(rel.reshape(-1)[i_rel]):.3g}, "
        f"at index {index_of(i_rel, e.shape)}"
    )
    raise CheckFailed(verdict(hint, evidence, tolerance_text(tol.atol, tol.rtol, str(dtype).removeprefix("torch."))))


@dataclass(frozen=True)
class Mistake:
    """A known mistake: what to tell the student, and the value the mistaken answer would produce.

    Attributes:
        message: the explanation, in the student's words, of what went wrong and how to fix it.
        changes: how the mistaken computation differs from the right one, as keyword arguments of the check's
            reference builder (e.g. {"scaling": 1.0}); two mistakes with disjoint changes can occur together.
        value: for a mistake that is no variation of the reference, a function computing its value.
        name: a short identifier of the mistake in its catalogue (e.g. "norm_over_dim0"), for listings and tests.
    """

    message: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    value: Callable[[], Any] | None = None
    name: str = ""


def recognise(
    actual: Any,
    mistakes: Sequence[Mistake],
    build: Callable[..., Any] | None = None,
    matches: Callable[[Any, Any], bool] = is_close,
    pairs: bool = True,
) -> list[Mistake]:
    """Find the known mistake(s) that explain actual: one, else two occurring together; [] when none does.

    Args:
        actual: the student's value.
        mistakes: the catalogue, most likely first.
        build: the reference builder: build(**changes) is the value the changes produce (None: values only).
        matches: matches(actual, candidate) -> bool.
        pairs: also try every two mistakes with disjoint changes together.

    Returns:
        [mistake] or [first, second].
    """

    def value_of(*chosen: Mistake) -> Any:
        if len(chosen) == 1 and chosen[0].value is not None:
            return chosen[0].value()
        changes: dict[str, Any] = {}
        for mistake in chosen:
            changes.update(mistake.changes)
        return build(**changes)

    for mistake in mistakes:
        if (mistake.value is not None or build is not None) and _safe_match(
            matches, actual, lambda m=mistake: value_of(m)
        ):
            return [mistake]
    if not pairs or build is None:
        return []
    combinable = [m for m in mistakes if m.value is None and m.changes]
    for first, second in itertools.combinations(combinable, 2):
        if first.changes.keys() & second.changes.keys():
            continue
        if _safe_match(matches, actual, lambda a=first, b=second: value_of(a, b)):
            return [first, second]
    return []


def _safe_match(matches: Callable[[Any, Any], bool], actual: Any, candidate: Callable[[], Any]) -> bool:
    try:
        return bool(matches(actual, candidate()))
    except (RuntimeError, ValueError):  # a candidate that cannot be built for these shapes explains nothing
        return False


def explain(found: Iterable[Mistake]) -> str:
    """Turn recognised mistakes into the hint: one message, or both of two that occur together."""
    found = list(found)
    note_mistakes(mistake.name for mistake in found)
    if not found:
        return ""
    if len(found) == 1:
        return found[0].message
    return "Two mistakes together: (1) " + found[0].message + " (2) " + found[1].message


def unchanged(obs: Observation, key: str, original: torch.Tensor) -> bool:
    """Tell whether the copy of an input the probe recorded after the call still equals the original (bit for bit)."""
    after = obs.tensors.get(key)
    return after is not None and after.dtype == original.dtype and torch.equal(after, original)


def student_error(obs: Observation, key: str, fallback_what: str = "", lessons: Sequence[Lesson] = ()) -> None:
    """Fail with the student's exception when the probe recorded one under key (a no-op otherwise).

    Args:
        obs: the probe's record.
        key: the key of the "error" fact.
        fallback_what: how to name the call when the record does not say.
        lessons: the check's own lessons for known exceptions, tried before EXCEPTION_LESSONS.
    """
    facts = obs.facts.get(key)
    if not facts:
        return
    what = facts.get("what") or fallback_what
    kind, message = facts.get("type", "Exception"), facts.get("message", "")
    if kind == "NotImplementedError":
        raise CheckFailed(
            f"{what} raised NotImplementedError: replace `raise NotImplementedError()` with your code and run the "
            f"cell again.",
            cause=key,
        )
    if kind == "ReferenceUnavailable":
        raise CheckFailed(
            f"{what} used reference code that graded answers may not call ({message}). Write the computation "
            f"yourself.",
            cause=key,
            unavailable=True,
        )
    lesson = lesson_for(str(what), f"{kind}: {message}", lessons)
    raise CheckFailed(
        sentences(
            f"{what} raised {kind}: {message}",
            lesson,
            "Fix the error in your code (the traceback above shows the line), then run the check again",
        ),
        cause=key,
    )


class CheckAssertion(AssertionError):
    """What a check raises in the notebook: an AssertionError whose traceback shows the student's code, not the check.

    IPython renders an exception through its `_render_traceback_` when it has one: here the frames of the student's
    own code that raised (if that is what failed; the check's frames are hidden by __tracebackhide__), then the
    message. Its name stays "AssertionError", the name students know (and nbgrader's feedback shows).
    """

    def _render_traceback_(self) -> list[str]:
        lines: list[str] = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            try:
                from IPython.core.interactiveshell import InteractiveShell

                lines += InteractiveShell.instance().InteractiveTB.structured_traceback(
                    type(cause), cause, cause.__traceback__
                )
                lines.append("\nThe check failed because of that error in your code:\n")
            except Exception:  # outside IPython: the message alone
                pass
        lines.append(f"\x1b[0;31mAssertionError\x1b[0m: {self}")
        return lines


CheckAssertion.__name__ = CheckAssertion.__qualname__ = "AssertionError"


def run_check(
    name: str,
    probe: Callable[[Any, Any], Observation],
    judge: Callable[[Any, Observation], str],
    student: Any,
    spec: Any,
) -> None:
    """Run a check in the notebook: probe the student's code, judge what it did, print ✔ or raise AssertionError.

    The AssertionError is raised from the student's own exception when that is what failed, so the traceback shows
    the frames of their code (the check's frames are hidden: IPython skips frames that set __tracebackhide__).
    """
    __tracebackhide__ = True
    observation = probe(student, spec)
    try:
        details = judge(spec, observation)
    except CheckFailed as failure:
        cause = observation.exceptions.get(failure.cause) if failure.cause else None
        raise CheckAssertion(str(failure)) from cause
    print(f"✔ {name} passed: {details}")
