"""Exercise 5's judge: magnitude_direction_change against the paper's §3.2 measure, one norm and one cosine per row."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from labhelpers.checks.core import (
    NUMBER_RTOL,
    NUMBER_RTOL_FLOAT32,
    CheckFailed,
    Mistake,
    describe_facts,
    explain,
    number_tolerance_text,
    numbers_close,
    recognise,
    run_check,
    student_error,
    unchanged,
)
from labhelpers.checks.messages import verdict
from labhelpers.probes.core import Observation
from labhelpers.probes.weight_change import WeightChangeCase, WeightChangeSpec, cases, probe


def reference_change(W0: torch.Tensor, W: torch.Tensor, dim: int = 1) -> tuple[float, float]:
    """Return (ΔM, ΔD) = (mean |‖W_i‖ − ‖W0_i‖|, mean (1 − cos(W_i, W0_i))) over rows (dim=1), in float64."""
    W0, W = W0.double(), W.double()
    norm0, norm = torch.linalg.vector_norm(W0, dim=dim), torch.linalg.vector_norm(W, dim=dim)
    cos = (W * W0).sum(dim=dim) / (norm * norm0)
    return float((norm - norm0).abs().mean()), float((1 - cos).mean())


def _number(obs: Observation, key: str, name: str, what: str) -> float:
    facts = obs.facts[key]
    if facts["kind"] in ("tensor", "parameter"):
        raise CheckFailed(
            verdict(
                f"{name} should be one Python float, the mean over rows, but {what} returned a tensor: reduce it to "
                f"one number and turn that into a Python float (Tensor.item in PyTorch's documentation)",
                f"Expected a float, got a tensor of shape {tuple(facts['shape'])}",
            )
        )
    if facts["kind"] != "number":
        raise CheckFailed(
            verdict(f"{name} returned by {what} should be a Python float", f"Got {describe_facts(facts)}")
        )
    return float(facts["value"])


def _returned_pair(obs: Observation, case: WeightChangeCase) -> tuple[float, float]:
    """Return (delta_m, delta_d) once both are Python numbers and W0 and W are unchanged."""
    what, key = case.what, case.key
    student_error(obs, f"{key}/error")
    result = obs.facts.get(f"{key}/result")
    if result is None:
        raise CheckFailed(f"{what} was not run (the check stopped before it).")
    if result["kind"] == "none":
        raise CheckFailed(
            f"{what} returned None: did you forget to return the two numbers, ΔM then ΔD? A function that ends "
            f"without a return statement returns None."
        )
    if f"{key}/delta_d" not in obs.facts:
        raise CheckFailed(
            verdict(f"{what} should return two floats, ΔM then ΔD", f"Expected a pair, got {describe_facts(result)}")
        )
    delta_m = _number(obs, f"{key}/delta_m", "delta_m", what)
    delta_d = _number(obs, f"{key}/delta_d", "delta_d", what)
    if not (unchanged(obs, f"{key}/W0_after", case.W0) and unchanged(obs, f"{key}/W_after", case.W)):
        raise CheckFailed(
            f"{what} modified W0 or W in place: the caller still needs both weights, so compute new tensors instead "
            f"(no in-place operators such as /=, no methods ending in an underscore, no assignments to W[...])."
        )
    return delta_m, delta_d


def _change_mistakes(W0: torch.Tensor, W: torch.Tensor) -> tuple[list[Mistake], list[Mistake]]:
    """Return the known wrong ΔM and ΔD of W0 → W (float64), each a value and what the student computed."""
    norm0, norm = torch.linalg.vector_norm(W0, dim=1), torch.linalg.vector_norm(W, dim=1)
    cos = (W0 * W).sum(dim=1) / (norm0 * norm)
    m_mistakes = [
        Mistake("one norm per input feature (dim=0): ΔM compares one norm per output feature, a row of the weight",
                value=lambda: float(
                    torch.linalg.vector_norm(W, dim=0).sub(torch.linalg.vector_norm(W0, dim=0)).abs().mean()
                ), name="magnitude_over_columns"),
        Mistake("the mean of the signed differences: take the absolute value of each row's change before averaging, "
                "mean(|‖W_i‖ − ‖W0_i‖|)", value=lambda: float((norm - norm0).mean()), name="signed_magnitude_change"),
        Mistake("the absolute value of the mean difference: take the absolute value of each row's change first, then "
                "average", value=lambda: abs(float((norm - norm0).mean())), name="absolute_of_mean"),
        Mistake("the norm of the difference ‖W_i − W0_i‖: ΔM compares the lengths, | ‖W_i‖ − ‖W0_i‖ |",
                value=lambda: float(torch.linalg.vector_norm(W - W0, dim=1).mean()), name="norm_of_difference"),
        Mistake("the change of the whole matrix's norm: compare each row's norm, then average over rows",
                value=lambda: abs(float(torch.linalg.vector_norm(W) - torch.linalg.vector_norm(W0))),
                name="whole_matrix_norm"),
    ]  # fmt: skip
    d_mistakes = [
        Mistake("the mean cosine similarity: ΔD is the mean of 1 − cos", value=lambda: float(cos.mean()),
                name="mean_cosine"),
        Mistake("cosines between columns (dim=0): ΔD compares each row (output feature) of W with the same row of W0",
                value=lambda: float((1 - torch.nn.functional.cosine_similarity(W, W0, dim=0)).mean()),
                name="direction_over_columns"),
        Mistake("the sum over rows: take the mean", value=lambda: float((1 - cos).sum()), name="sum_over_rows"),
        Mistake("the angle: ΔD is the mean of 1 − cos, not of arccos",
                value=lambda: float(torch.arccos(cos.clamp(-1, 1)).mean()), name="angle"),
    ]  # fmt: skip
    return m_mistakes, d_mistakes


def _judge_change(case: WeightChangeCase, delta_m: float, delta_d: float) -> None:
    """Check (delta_m, delta_d) against the paper's measure; on a failure, name what was computed instead."""
    what = case.what
    W0, W = case.W0.double(), case.W.double()
    expected_m, expected_d = reference_change(W0, W)
    rtol = NUMBER_RTOL if case.W0.dtype == torch.float64 else NUMBER_RTOL_FLOAT32
    ok_m, ok_d = numbers_close(delta_m, expected_m, rtol), numbers_close(delta_d, expected_d, rtol)
    if ok_m and ok_d:
        return
    evidence = f"{what}: expected (ΔM, ΔD) = ({expected_m:.6g}, {expected_d:.6g}), got ({delta_m:.6g}, {delta_d:.6g})"
    tol_note = number_tolerance_text(rtol)
    if numbers_close(delta_m, expected_d, rtol) and numbers_close(delta_d, expected_m, rtol):
        raise CheckFailed(verdict("ΔM and ΔD are swapped: the order is (delta_m, delta_d)", evidence, tol_note))
    column_m, column_d = reference_change(W0, W, dim=0)
    if numbers_close(delta_m, column_m, rtol) and numbers_close(delta_d, column_d, rtol):
        raise CheckFailed(
            verdict(
                "both numbers match norms and cosines over dim=0, one per input feature: the paper compares rows, one "
                "per output feature of the (out_features, in_features) weight (§3.2, and Exercise 1 for the axis)",
                evidence,
                tol_note,
            )
        )
    m_mistakes, d_mistakes = _change_mistakes(W0, W)
    problems = []
    for ok, value, name, mistakes, formula in (
        (ok_m, delta_m, "delta_m", m_mistakes, "ΔM = mean_i |‖W_i‖ − ‖W0_i‖|"),
        (ok_d, delta_d, "delta_d", d_mistakes, "ΔD = mean_i (1 − cos(W_i, W0_i))"),
    ):
        if ok:
            continue
        known = explain(recognise(value, mistakes, matches=lambda a, c: numbers_close(a, c, rtol), pairs=False))
        problems.append(
            f"for {name} you computed {known}"
            if known
            else f"{name} is not the paper's {formula} (§3.2), with W_i the i-th row (output feature) of W"
        )
    raise CheckFailed(verdict("; and ".join(problems), evidence, tol_note))


def judge(spec: WeightChangeSpec, obs: Observation) -> str:
    """Judge magnitude_direction_change's observations; return a pass summary or raise CheckFailed."""
    n_checks = 0
    for case in cases(spec):
        delta_m, delta_d = _returned_pair(obs, case)
        _judge_change(case, delta_m, delta_d)
        n_checks += 1
    shapes = ", ".join(str(tuple(s)) for s in spec.shapes)
    return f"{n_checks} checks on shapes {shapes}: per-row ΔM and ΔD, inputs unchanged"


def check_magnitude_direction_change(
    magnitude_direction_change: Callable,
    shapes: Sequence[Sequence[int]] = WeightChangeSpec.shapes,
    seeds: Sequence[int] = WeightChangeSpec.seeds,
    dtypes: Sequence[torch.dtype | str] = (torch.float64, torch.float32),
) -> None:
    """Check magnitude_direction_change(W0, W) -> (delta_m, delta_d) against the paper's §3.2 measure.

    Args:
        magnitude_direction_change: the student's function.
        shapes: weight shapes (out_features, in_features); non-square, so that rows and columns differ.
        seeds: seeds of the weights.
        dtypes: dtypes of the weights.
    """
    __tracebackhide__ = True
    spec = WeightChangeSpec.make(shapes=shapes, seeds=seeds, dtypes=dtypes)
    run_check("magnitude_direction_change", probe, judge, magnitude_direction_change, spec)
