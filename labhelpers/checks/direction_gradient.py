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
    """Return the known wrong gradients, most likely first; none of the messages states the answer's formula."""
    mistakes = [
        Mistake(
            "with detach_norm=False the norm also gets a gradient, but your result is the one of a constant norm: "
            "‖V_i‖ depends on V_i too, so differentiate it as well (paper §4.2, Eq. 6). What does a small change of "
            "V_i along its own direction do to W'_i = m_i·V_i/‖V_i‖?",
            {"project": False},
            name="never_projects",
        )
        if not case.detach_norm
        else Mistake(
            "with detach_norm=True the norm is a constant, yet your result removes a component along the direction: "
            "only the norm's own gradient produces that, and a constant norm has none, so W' is linear in V here "
            "(paper §4.3).",
            {"project": True},
            name="always_projects",
        ),
        Mistake(
            "the projection is over columns: DoRA normalises each row (one output feature), so the component to remove "
            "lies along each row's own direction.",
            {"project": True, "dim": 0},
            name="projection_over_columns",
        ),
        Mistake(
            "‖V‖ is taken over dim=0 (one per input feature): " + AXIS_EXPLANATION,
            value=lambda: autograd_direction_gradient(case.G, case.V, case.m, case.detach_norm, norm_dim=0),
            name="norm_over_dim0",
        ),
        Mistake(
            "the factor m/‖V‖ is missing: W' = m·V/‖V‖ scales each row of V by m_i/‖V_i‖, and the chain rule carries "
            "that factor into dL/dV.",
            {"factor": "1"},
            name="factor_missing",
        ),
        Mistake(
            "the projection is added: the norm's gradient removes the component along the direction, it does not add "
            "it a second time.",
            {"sign": 1.0},
            name="projection_added",
        ),
        Mistake(
            "the projection uses V instead of the unit direction V̂ = V/‖V‖ (or misses the 1/‖V‖² of V Vᵀ): a "
            "component along a direction is measured with a unit vector.",
            {"unit": False},
            name="projection_not_unit",
        ),
        Mistake(
            "the factor is inverted: the chain rule brings m/‖V‖, the factor W' applies to V, not ‖V‖/m.",
            {"factor": "n/m"},
            name="factor_inverted",
        ),
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
                f"{case.what} modified its argument {modified[0]} in place: the caller still needs its inputs, so "
                f"compute new tensors instead (no in-place operators such as *= or -=, no methods ending in an "
                f"underscore)."
            )
        result = expect_tensor(
            obs, f"{case.key}/result", f"the result of {case.what}", shape=tuple(case.V.shape), dtype=case.V.dtype,
            hint="dL/dV has one entry per entry of V: the shape of weight.",
        )  # fmt: skip
        expected = autograd_direction_gradient(case.G, case.V, case.m, case.detach_norm)
        if is_close(result, expected):
            n_checks += 1
            continue
        hint = explain(recognise(result, _mistakes(case), _build(case))) or (
            f"your result differs from autograd's dL/dV for W' = m·V/‖V‖ (row norms, detach_norm={case.detach_norm}) "
            f"in a way no known mistake explains. Derive it row by row, with ‖V‖ held constant (detach_norm=True, "
            f"paper §4.3) or differentiated too (detach_norm=False, §4.2, Eq. 6), and compare your formula with "
            f"autograd on a tiny example."
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
