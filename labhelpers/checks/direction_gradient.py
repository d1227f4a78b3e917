"""Exercise 3's judge: dora_direction_gradient against autograd, with the norm detached (paper §4.3, Eq. 11) or not
(§4.2, Eq. 6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from labhelpers.checks.core import (
    CheckFailed,
    Mistake,
    assert_close,
    expect_tensor,
    explain,
    is_close,
    recognise,
    run_check,
    student_error,
    unchanged,
)
from labhelpers.checks.decompose import AXIS_EXPLANATION
from labhelpers.probes.core import Observation
from labhelpers.probes.direction_gradient import DirectionGradientCase, DirectionGradientSpec, cases, probe


def autograd_direction_gradient(
    G: torch.Tensor, V: torch.Tensor, m: torch.Tensor, detach_norm: bool, norm_dim: int = 1
) -> torch.Tensor:
    """Return dL/dV by autograd for W' = m · V/‖V‖ (row norms, optionally detached) and dL/dW' = G.

    Args:
        G: (out, in) dL/dW'; V: (out, in); m: (out, 1).
        detach_norm: treat ‖V‖ as a constant.
        norm_dim: 1 (right); 0 reproduces the dim=0 mistake.

    Returns:
        (out, in).
    """
    V = V.detach().double().clone().requires_grad_(True)
    norm = torch.linalg.vector_norm(V, dim=norm_dim, keepdim=True)
    W_prime = m.double() * V / (norm.detach() if detach_norm else norm)
    (grad,) = torch.autograd.grad((W_prime * G.double()).sum(), V)
    return grad


def _build(case: DirectionGradientCase) -> Callable[..., torch.Tensor]:
    """Return build(**changes): the gradient, written out, with known mistakes switched on by keyword."""
    G, V, m = case.G.double(), case.V.double(), case.m.double()

    def build(
        project: bool | None = None, dim: int = 1, sign: float = -1.0, factor: str = "m/n", unit: bool = True
    ) -> torch.Tensor:
        project = (not case.detach_norm) if project is None else project
        norm = torch.linalg.vector_norm(V, dim=dim, keepdim=True)
        direction = V / norm if unit else V
        scale = {"m/n": m / torch.linalg.vector_norm(V, dim=1, keepdim=True), "1": torch.ones_like(m),
                 "n/m": torch.linalg.vector_norm(V, dim=1, keepdim=True) / m}[factor]  # fmt: skip
        if not project:
            return scale * G
        return scale * (G + sign * (direction * G).sum(dim=dim, keepdim=True) * direction)

    return build


def _mistakes(case: DirectionGradientCase) -> list[Mistake]:
    mistakes = [
        Mistake(
            "with detach_norm=False the norm also gets a gradient: subtract the component along the direction, "
            "(m/||V||)·(g - (V̂·g) V̂) row-wise with V̂ = V/||V|| (paper §4.2, Eq. 6).",
            {"project": False},
        )
        if not case.detach_norm
        else Mistake(
            "with detach_norm=True the norm is a constant: dL/dV = (m/||V||)·g, with no projection (paper §4.3, "
            "Eq. 11).",
            {"project": True},
        ),
        Mistake(
            "the projection is over columns: project each row, (V̂ * g).sum(dim=1, keepdim=True) with V̂ = V/||V|| "
            "over dim=1.",
            {"project": True, "dim": 0},
        ),
        Mistake(
            "||V|| is taken over dim=0: " + AXIS_EXPLANATION + " Use the row norms, dim=1.",
            value=lambda: autograd_direction_gradient(case.G, case.V, case.m, case.detach_norm, norm_dim=0),
        ),
        Mistake(
            "the factor m/||V|| is missing: multiply the gradient by magnitude / ||V|| (row-wise).", {"factor": "1"}
        ),
        Mistake("the projection is added: subtract it, g - (V̂·g) V̂.", {"sign": 1.0}),
        Mistake(
            "the projection uses V instead of the unit direction V̂ = V/||V|| (or misses the 1/||V||² of V Vᵀ).",
            {"unit": False},
        ),
        Mistake("the factor is inverted: multiply by magnitude / ||V||, not ||V|| / magnitude.", {"factor": "n/m"}),
    ]
    return mistakes


def judge(spec: DirectionGradientSpec, obs: Observation) -> str:
    """Judge dora_direction_gradient's observations against autograd; return a pass summary or raise CheckFailed."""
    n_checks = 0
    for case in cases(spec):
        student_error(obs, f"{case.key}/error")
        if f"{case.key}/result" not in obs.facts:
            raise CheckFailed(f"{case.what} was not run (the check stopped before it).")
        modified = [
            name
            for name, original in (("grad_weight", case.G), ("weight", case.V), ("magnitude", case.m))
            if not unchanged(obs, f"{case.key}/after/{name}", original)
        ]
        if modified:
            raise CheckFailed(
                f"{case.what} modified its argument {modified[0]} in place: compute new tensors instead (no *=, -=, "
                f".mul_())."
            )
        result = expect_tensor(
            obs, f"{case.key}/result", f"the result of {case.what}", shape=tuple(case.V.shape), dtype=case.V.dtype,
            hint="Return dL/dV, same shape as weight.",
        )  # fmt: skip
        expected = autograd_direction_gradient(case.G, case.V, case.m, case.detach_norm)
        if is_close(result, expected):
            n_checks += 1
            continue
        hint = explain(recognise(result, _mistakes(case), _build(case))) or (
            "expected autograd's dL/dV for W' = m·V/||V|| (row norms): (m/||V||)·g with detach_norm=True, "
            "(m/||V||)·(g - (V̂·g) V̂) with detach_norm=False."
        )
        assert_close(result, expected, f"the result of {case.what} vs autograd", hint=hint)
    shapes = ", ".join(str(tuple(s)) for s in spec.shapes)
    return f"{n_checks} checks on shapes {shapes} ({spec.dtype}) match autograd with and without a detached norm"


def check_dora_direction_gradient(
    dora_direction_gradient: Callable,
    shapes: Sequence[Sequence[int]] = DirectionGradientSpec.shapes,
    seeds: Sequence[int] = DirectionGradientSpec.seeds,
    dtype: torch.dtype | str = torch.float64,
) -> None:
    """Check dora_direction_gradient(grad_weight, weight, magnitude, detach_norm) against autograd.

    Args:
        dora_direction_gradient: the student's function; grad_weight, weight: (out_features, in_features),
            magnitude: (out_features, 1) -> dL/dV (out_features, in_features).
        shapes: weight shapes (out_features, in_features).
        seeds: random seeds of V, magnitude and dL/dW'.
        dtype: dtype of the inputs.
    """
    __tracebackhide__ = True
    spec = DirectionGradientSpec.make(shapes=shapes, seeds=seeds, dtype=dtype)
    run_check("dora_direction_gradient", probe, judge, dora_direction_gradient, spec)
