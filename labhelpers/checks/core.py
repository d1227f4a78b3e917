"""Shared machinery of the student-facing checks: tolerances, comparisons and failure messages.

Every check returns None on success (after printing one line through `passed`) and raises
AssertionError whose message says what was compared, what was expected, what was got and how
to fix it. Student code is only ever called through `call_student`, so an exception inside it
reads as a message about the student's code, never as a traceback from inside the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

# (rtol, atol) per dtype, used as |actual - expected| <= atol * scale + rtol * |expected|, where
# scale = max(1, max |expected|): round-off of a sum grows with the size of its terms, so an element
# near zero in a tensor of large values gets an absolute tolerance in proportion.
# Checks run in float64 by default: there any correct formula (loops, einsum, an epsilon in the
# norm, a merged weight instead of PEFT's reuse of the base output) agrees with PEFT to ~1e-13,
# while every known mistake is off by O(1), so the tolerance is loose enough to never reject a
# correct answer and still far below any mistake. Lower precisions get the usual round-off bounds
# (cf. torch.testing.assert_close), widened for the sums over in_features in a linear layer.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """Return (rtol, atol) for dtype; unknown dtypes (integers …) compare exactly."""
    return TOLERANCES.get(dtype, (0.0, 0.0))


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block (also usable as a decorator), then restore the thread count.

    Checks compute thousands of tiny products; with several threads each one pays the thread pool's
    start-up and, on a busy machine, waits for a free core, which measured 40x slower than one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _coarser(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """Return the dtype with the looser tolerance: a float32 answer is judged with float32's round-off."""
    return a if _tolerance(a)[0] >= _tolerance(b)[0] else b


def _difference_bound(
    actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return actual and expected in float64 on the CPU, and the allowed |difference| per element."""
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(e).all()):
        raise ValueError("the reference is not finite; this is a bug in the check, not in your code")
    scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
    return a, e, atol * scale + rtol * e.abs()


def _is_close(actual: Any, expected: torch.Tensor) -> bool:
    """Tell whether actual is a finite tensor of expected's shape within the tolerance (no message)."""
    if (
        not isinstance(actual, torch.Tensor)
        or actual.shape != expected.shape
        or not bool(torch.isfinite(expected).all())
    ):
        return False
    rtol, atol = _tolerance(_coarser(actual.dtype, expected.dtype))
    a, e, bound = _difference_bound(actual, expected, rtol, atol)
    return bool(((a - e).abs() <= bound).all())


def _index(flat_index: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Turn a flat index into a tuple index of a tensor of the given shape."""
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def _sentence(text: str) -> str:
    """Start text with a capital letter, so that a hint reads as its own sentence after the numbers."""
    return text[:1].upper() + text[1:]


def _describe(value: Any) -> str:
    """Name the type (and shape/dtype) of value, for messages about malformed answers."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _shape_matches(actual: Sequence[int], expected: Sequence[int | None]) -> bool:
    """Tell whether actual equals expected, where None in expected matches any size."""
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def expect_tensor(
    value: Any,
    what: str,
    shape: Sequence[int | None] | None = None,
    dtype: torch.dtype | None = None,
    hint: str = "",
) -> torch.Tensor:
    """Check that value is a finite tensor of the expected shape and dtype, and return it.

    Checks go type → shape → dtype → finite values, each failure saying how to fix it.

    Args:
        value: what the student's code produced.
        what: how to name it in messages, e.g. "the magnitude returned by decompose_weight".
        shape: expected shape; None anywhere in it matches any size.
        dtype: expected dtype, or None to accept any.
        hint: appended to every failure message (e.g. the likely missing `return`).
    Returns:
        value, unchanged.
    """
    suffix = f" {_sentence(hint)}" if hint else ""
    if value is None:
        raise AssertionError(f"{what} is None: did you forget a `return` statement?{suffix}")
    if not isinstance(value, torch.Tensor):
        raise AssertionError(
            f"{what} should be a torch.Tensor but is {_describe(value)}: "
            f"build it with torch operations on the input tensors.{suffix}"
        )
    if shape is not None and not _shape_matches(tuple(value.shape), tuple(shape)):
        expected = (
            "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        )
        raise AssertionError(
            f"{what} has shape {tuple(value.shape)}, expected {expected}: "
            f"check which dimension you reduce over and whether you keep it (keepdim=True).{suffix}"
        )
    if dtype is not None and value.dtype != dtype:
        raise AssertionError(
            f"{what} has dtype {value.dtype}, expected {dtype}: keep the input's dtype "
            f"(no .float()/.double(); create new tensors with dtype=... or *_like of the input).{suffix}"
        )
    if value.is_floating_point() or value.is_complex():
        finite = torch.isfinite(value.detach())
        if not bool(finite.all()):
            bad = (~finite).reshape(-1)
            n_nan = int(torch.isnan(value.detach()).sum())
            first = _index(int(bad.nonzero()[0]), value.shape) if value.dim() else ()
            raise AssertionError(
                f"{what} contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values "
                f"(first at index {first}): usually a division by a zero norm; "
                f"clamp the denominator, e.g. norm.clamp_min(1e-12).{suffix}"
            )
    return value


def assert_close(
    actual: Any,
    expected: torch.Tensor,
    what: str,
    hint: str = "",
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Check that actual matches expected within the tolerance of the lower-precision dtype.

    Args:
        actual: the student's tensor (malformed values fail with a message, see expect_tensor).
        expected: the reference tensor, any shape.
        what: what was compared, e.g. "DoRALinear output (eval mode, bias=True)".
        hint: the likely mistake, appended to the failure message.
        rtol, atol: override TOLERANCES (keyword only).
    """
    actual = expect_tensor(actual, what, shape=tuple(expected.shape), hint=hint)
    dtype = _coarser(actual.dtype, expected.dtype)
    default_rtol, default_atol = _tolerance(dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    a, e, bound = _difference_bound(actual, expected, rtol, atol)
    diff = (a - e).abs()
    if bool((diff <= bound).all()):
        return
    # Relative difference where expected is 0 is inf (or 0 when actual is 0 too).
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / e.abs())
    i_abs = int(diff.reshape(-1).argmax())
    i_rel = int(rel.reshape(-1).argmax())
    where_abs = _index(i_abs, e.shape)
    where_rel = _index(i_rel, e.shape)
    message = (
        f"{what} does not match the reference: max abs difference {float(diff.reshape(-1)[i_abs]):.3g} "
        f"at index {where_abs} (got {float(a.reshape(-1)[i_abs]):.6g}, expected {float(e.reshape(-1)[i_abs]):.6g}); "
        f"max rel difference {float(rel.reshape(-1)[i_rel]):.3g} at index {where_rel}; "
        f"allowed: atol={atol:g} * max(1, max|expected|) + rtol={rtol:g} * |expected| ({dtype})."
    )
    raise AssertionError(f"{message} {_sentence(hint)}" if hint else message)


def call_student(fn: Callable, *args: Any, what: str, **kwargs: Any) -> Any:
    """Run student code and turn an exception inside it into an AssertionError about that code.

    Args:
        fn: the student's function, class or method.
        *args, **kwargs: passed to fn.
        what: how to name the call in messages, e.g. "decompose_weight(W) with W of shape (7, 5)".
    Returns:
        whatever fn returns.
    """
    if not callable(fn):
        raise AssertionError(
            f"{what}: expected a function or class but got {_describe(fn)}; pass the object itself, not its result"
        )
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        # nbgrader's release replaces every solution by `raise NotImplementedError()`.
        raise AssertionError(
            f"{what} raised NotImplementedError: replace `raise NotImplementedError()` with your code and run the cell again."
        ) from error
    except Exception as error:
        raise AssertionError(
            f"{what} raised {type(error).__name__}: {error}. "
            f"Fix the error in your code (the traceback above shows the line), then run the check again."
        ) from error


def passed(name: str, details: str = "") -> None:
    """Print the one success line of a check, e.g. "✔ decompose_weight passed: 5 checks …"."""
    print(f"✔ {name} passed: {details}" if details else f"✔ {name} passed")
