"""Exercise 1's judge: decompose_weight against the definition W = m · V/‖V‖, one magnitude per output feature.

Conventions, as in nn.Linear and PEFT: a weight is (out_features, in_features) and DoRA keeps one magnitude per
OUTPUT feature, the norm of each row (dim=1) — PEFT's `get_weight_norm` and the authors' code (NVlabs/DoRA) both
normalise dim=1, and the authors confirmed the per-output-feature reading of the paper's ambiguous W ∈ R^{d×k}
(nbasyl/DoRA#1). Reading "column norm" literally on nn.Linear's weight (dim=0) is the mistake explained here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from labhelpers.checks.core import (
    CheckFailed,
    Mistake,
    assert_close,
    describe_facts,
    expect_tensor,
    explain,
    is_close,
    recognise,
    run_check,
    student_error,
    unchanged,
)
from labhelpers.checks.messages import verdict
from labhelpers.probes.core import Observation
from labhelpers.probes.decompose import DecomposeCase, DecomposeSpec, cases, probe

EPSILON_LIMIT = 1e-3
"""Largest amount by which a magnitude above the row norms reads as an added epsilon (rather than another mistake)."""

AXIS_EXPLANATION = (
    "DoRA keeps one magnitude per output feature, as the authors' code and PEFT compute it, and nn.Linear stores its "
    "weight as (out_features, in_features): which axis of an (out, in) weight holds one output feature? (Exercise 1 "
    "explains the paper's notation.)"
)
"""The concept behind every mistake of axis: taught as a question, never as the argument to type."""


def row_norms(W: torch.Tensor) -> torch.Tensor:
    """Return the row norms of W as (out_features, 1)."""
    return torch.linalg.vector_norm(W, dim=1, keepdim=True)


def judge_magnitude_shape(obs: Observation, key: str, W: torch.Tensor, what: str) -> None:
    """Explain the usual wrong magnitude shapes (dim=0, no keepdim) before the generic shape check."""
    out_features, in_features = W.shape
    facts = obs.facts.get(key) or {}
    if facts.get("kind") in ("tensor", "parameter") and tuple(facts["shape"]) != (out_features, 1):
        shape = tuple(facts["shape"])
        if shape in ((1, in_features), (in_features,), (in_features, 1)) and in_features != out_features:
            raise CheckFailed(
                verdict(
                    f"you took the norm over dim=0, which gives one number per input feature (a column). "
                    f"{AXIS_EXPLANATION}",
                    f"{what}: expected shape ({out_features}, 1), got {shape}",
                ),
                mistakes=("norm_over_dim0",),
            )
        if shape == (out_features,):
            raise CheckFailed(
                verdict(
                    "the magnitude lost its reduced axis: a reduction removes the axis it reduces unless asked to keep "
                    "it (keepdim). An (out,) vector does not broadcast over the rows of an (out, in) weight: it lines "
                    "up with the last axis, the input features; an (out, 1) column scales each row",
                    f"{what}: expected shape ({out_features}, 1), got {shape}",
                ),
                mistakes=("no_keepdim",),
            )
    expect_tensor(obs, key, what, shape=(out_features, 1))


def _judge_returned_pair(obs: Observation, case: DecomposeCase, what: str) -> None:
    """Check that decompose_weight returned two values and left W as it was."""
    student_error(obs, f"{case.key}/error")
    result = obs.facts.get(f"{case.key}/result")
    if result is None:
        raise CheckFailed(f"{what} was not run (the probe stopped before it).")
    if result["kind"] == "none":
        raise CheckFailed(
            f"{what} returned None: did you forget to return the magnitude and the direction? A function that ends "
            f"without a return statement returns None."
        )
    if result["kind"] != "sequence" or result["length"] != 2:
        got = describe_facts(result)
        if result["kind"] in ("tensor", "parameter"):
            got = f"a single tensor of shape {tuple(result['shape'])}"
        raise CheckFailed(
            verdict(
                f"{what} should return two tensors, the magnitude and then the direction",
                f"Expected a pair, got {got}",
            )
        )
    if not unchanged(obs, f"{case.key}/W_after", case.W):
        raise CheckFailed(
            f"{what} modified W in place: W is the layer's pretrained weight, and the decomposition must leave it as it "
            f"was. Compute new tensors instead of writing into W (in-place operators such as /=, methods ending in an "
            f"underscore, or assignments to W[...])."
        )


def _returned_tensors(obs: Observation, case: DecomposeCase, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (magnitude, direction) once both are finite tensors of the right shape, dtype and device."""
    W, key = case.W, case.key
    out_features, in_features = W.shape
    zero_hint = (
        "An all-zero row has norm 0 and no direction: its direction should stay a zero row, and 0/0 is NaN, so the "
        "division needs a denominator that is never zero there (any non-zero one keeps the row zero)."
        if case.zero_row is not None
        else ""
    )
    judge_magnitude_shape(obs, f"{key}/magnitude", W, f"the magnitude returned by {what}")
    direction_facts = obs.facts.get(f"{key}/direction") or {}
    if direction_facts.get("kind") in ("tensor", "parameter") and tuple(direction_facts["shape"]) == (
        in_features,
        out_features,
    ) != (out_features, in_features):
        raise CheckFailed(
            verdict(
                "the direction is transposed: it keeps W's (out_features, in_features) layout, one unit row per output "
                "feature",
                f"the direction returned by {what}: expected shape ({out_features}, {in_features}), got "
                f"({in_features}, {out_features})",
            )
        )
    values = {}
    for name, shape in (("magnitude", (out_features, 1)), ("direction", tuple(W.shape))):
        values[name] = expect_tensor(
            obs,
            f"{key}/{name}",
            f"the {name} returned by {what}",
            shape=shape,
            dtype=W.dtype,
            hint=zero_hint if name == "direction" else "",
        )
        device = obs.facts[f"{key}/{name}"]["device"]
        if device != str(W.device):
            raise CheckFailed(
                verdict(
                    "new tensors must stay on the input's device: a tensor created without one is on the CPU, and "
                    "moving a result elsewhere breaks the next operation that meets W",
                    f"the {name} returned by {what}: expected device {W.device}, got {device}",
                )
            )
    return values["magnitude"], values["direction"]


def _judge_magnitude(case: DecomposeCase, magnitude: torch.Tensor, what: str) -> None:
    """Check that the magnitude is the row norms of W; name an added epsilon or a known wrong norm."""
    W = case.W
    reference = row_norms(W.double())
    if is_close(magnitude, reference.to(W.dtype)):
        return
    if _epsilon_matches(magnitude, reference):
        row = case.zero_row if case.zero_row is not None else int((magnitude.double() - reference).argmax())
        raise CheckFailed(
            verdict(
                "you added an epsilon to the magnitude (or clamped it). The magnitude is the exact length of each row; "
                "only a division by a zero norm needs protecting, so guard the denominator, not the magnitude",
                f"the magnitude returned by {what}, row {row}: expected {float(reference[row, 0]):.10g}, got "
                f"{float(magnitude[row, 0]):.10g} ({float(magnitude[row, 0] - reference[row, 0]):.2g} more)",
            )
        )
    assert_close(
        magnitude,
        reference,
        f"the magnitude returned by {what}",
        hint=explain(recognise(magnitude, _magnitude_mistakes(W, reference), pairs=False))
        or "the magnitude is not the L2 norm of each row of W (one per output feature, Exercise 1's definition).",
    )


def _judge_direction(case: DecomposeCase, magnitude: torch.Tensor, direction: torch.Tensor, what: str) -> None:
    """Check that every non-zero row of the direction has norm 1 and that magnitude * direction rebuilds W."""
    W = case.W
    reference = row_norms(W.double())
    nonzero = reference.view(-1) > 0
    assert_close(
        row_norms(direction.double())[nonzero],
        torch.ones_like(reference[nonzero]).to(W.dtype),
        f"the row norms of the direction returned by {what}",
        hint="every non-zero row of the direction should have norm 1: the direction is W with each row divided by "
        "its length.",
    )
    assert_close(
        magnitude * direction,
        W,
        f"magnitude * direction returned by {what}",
        hint="magnitude times direction should rebuild W exactly: was one of them computed over another axis, or W "
        "rescaled?",
    )


def judge(spec: DecomposeSpec, obs: Observation) -> str:
    """Judge decompose_weight's observations; return the summary of a pass or raise CheckFailed."""
    n_checks = 0
    for case in cases(spec):
        what = f"decompose_weight(W) with {case.text}"
        _judge_returned_pair(obs, case, what)
        magnitude, direction = _returned_tensors(obs, case, what)
        _judge_magnitude(case, magnitude, what)
        _judge_direction(case, magnitude, direction, what)
        n_checks += 1
    shapes = ", ".join(str(tuple(s)) for s in spec.shapes)
    return (
        f"{n_checks} checks on shapes {shapes} ({', '.join(spec.dtypes)}, with and without a zero row): row-norm "
        f"magnitude, unit directions, exact reconstruction, W unchanged"
    )


def _magnitude_mistakes(W: torch.Tensor, reference: torch.Tensor) -> list[Mistake]:
    """Return the known wrong magnitudes of W (reference: the row norms, float64)."""
    return [
        Mistake(
            "the magnitude is the squared length of each row: the L2 norm is the square root of the sum of squares.",
            value=lambda: reference**2,
            name="squared_norm",
        ),
        Mistake(
            "the magnitude is the sum of absolute values of each row (the L1 norm): DoRA uses the L2 norm, the square "
            "root of the sum of squares.",
            value=lambda: W.double().abs().sum(dim=1, keepdim=True),
            name="l1_norm",
        ),
        Mistake(
            "the magnitude is all ones: it is the length (L2 norm) of each row of W, so that magnitude times direction "
            "rebuilds W.",
            value=lambda: torch.ones_like(reference),
            name="ones",
        ),
    ]


def _epsilon_matches(actual: torch.Tensor, reference: torch.Tensor) -> bool:
    """Tell whether actual is the row norms plus a small positive amount (an epsilon added to, or a clamp of, them)."""
    extra = actual.double() - reference
    return bool((extra >= 0).all() and (extra <= EPSILON_LIMIT).all() and (extra > 0).any())


def check_decompose_weight(
    decompose_weight: Callable,
    shapes: Sequence[Sequence[int]] = DecomposeSpec.shapes,
    seeds: Sequence[int] = DecomposeSpec.seeds,
    dtypes: Sequence[torch.dtype | str] = (torch.float64, torch.float32),
) -> None:
    """Check decompose_weight(W) -> (magnitude, direction) on random weights, with and without a zero row.

    Args:
        decompose_weight: the student's function; W: (out_features, in_features) ->
            magnitude (out_features, 1), direction (out_features, in_features).
        shapes: weight shapes (out_features, in_features) to try.
        seeds: random seeds of the weights.
        dtypes: floating dtypes to try.
    """
    __tracebackhide__ = True
    spec = DecomposeSpec.make(shapes=shapes, seeds=seeds, dtypes=dtypes)
    run_check("decompose_weight", probe, judge, decompose_weight, spec)
