"""Exercise 3's check: correct dora_direction_gradient answers pass, every known mistake fails with its message."""

from __future__ import annotations

import math

import pytest
import torch

from labhelpers.checks import check_dora_direction_gradient
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks, phrase

# The notebook's visible and hidden check calls, read from solutions/dora/dora_lab.ipynb.
GRADIENT_CONFIGS = notebook_calls("check_dora_direction_gradient")


def gradient_reference(grad_weight, weight, magnitude, detach_norm=True):
    norm = torch.linalg.vector_norm(weight, dim=1, keepdim=True)
    grad = (magnitude / norm) * grad_weight
    if detach_norm:
        return grad
    direction = weight / norm
    return grad - (grad * direction).sum(dim=1, keepdim=True) * direction


def gradient_projection_matrix(grad_weight, weight, magnitude, detach_norm=True):
    rows = []
    for g, v, m in zip(grad_weight, weight, magnitude):
        n = torch.sqrt(v @ v)
        P = torch.eye(len(v), dtype=v.dtype) - (0 if detach_norm else torch.outer(v, v) / n**2)
        rows.append(m / n * (P @ g))
    return torch.stack(rows)


def gradient_einsum(grad_weight, weight, magnitude, detach_norm=True):
    norm = torch.einsum("oi,oi->o", weight, weight).sqrt().unsqueeze(1)
    v_hat = weight / norm
    along = torch.einsum("oi,oi->o", v_hat, grad_weight).unsqueeze(1) * v_hat
    return magnitude / norm * (grad_weight if detach_norm else grad_weight - along)


def gradient_by_autograd(grad_weight, weight, magnitude, detach_norm=True):
    V = weight.detach().clone().requires_grad_(True)
    norm = V.norm(dim=1, keepdim=True)
    W_prime = magnitude * V / (norm.detach() if detach_norm else norm)
    return torch.autograd.grad(W_prime, V, grad_weight)[0]


@pytest.mark.parametrize("config", GRADIENT_CONFIGS.values(), ids=GRADIENT_CONFIGS.keys())
@pytest.mark.parametrize(
    "dora_direction_gradient",
    [gradient_reference, gradient_projection_matrix, gradient_einsum, gradient_by_autograd],
    ids=lambda f: f.__name__.removeprefix("gradient_"),
)
def test_check_dora_direction_gradient_accepts_correct_answers(dora_direction_gradient, config, capsys):
    assert check_dora_direction_gradient(dora_direction_gradient, **config) is None
    assert capsys.readouterr().out.startswith("✔ dora_direction_gradient passed:")


def _gradient_with(project, dim=1, sign=-1.0, factor=lambda m, n: m / n, normalise=True):
    """A wrong dora_direction_gradient: project (bool or callable on detach_norm) with the given pieces."""

    def dora_direction_gradient(grad_weight, weight, magnitude, detach_norm=True):
        norm = weight.norm(dim=1, keepdim=True)
        v = weight / weight.norm(dim=dim, keepdim=True) if normalise else weight
        along = (v * grad_weight).sum(dim=dim, keepdim=True) * v
        do_project = project(detach_norm) if callable(project) else project
        return factor(magnitude, norm) * (grad_weight + sign * along if do_project else grad_weight)

    return dora_direction_gradient


def _gradient_in_place(grad_weight, weight, magnitude, detach_norm=True):
    grad_weight *= magnitude / weight.norm(dim=1, keepdim=True)
    return grad_weight


GRADIENT_MISTAKES = {
    "never_projects": (
        _gradient_with(project=False),
        "with detach_norm=False the norm also gets a gradient, but your result is the one of a constant norm",
    ),
    "always_projects": (_gradient_with(project=True), "with detach_norm=True the norm is a constant"),
    "flag_inverted": (
        _gradient_with(project=lambda detach_norm: detach_norm),
        "with detach_norm=True the norm is a constant",
    ),
    "projection_over_columns": (_gradient_with(project=lambda d: not d, dim=0), "the projection is over columns"),
    "factor_missing": (
        _gradient_with(project=lambda d: not d, factor=lambda m, n: 1.0),
        "the factor m/‖V‖ is missing",
    ),
    "factor_inverted": (_gradient_with(project=lambda d: not d, factor=lambda m, n: n / m), "the factor is inverted"),
    "projection_added": (_gradient_with(project=lambda d: not d, sign=1.0), "the projection is added"),
    "projection_not_normalised": (
        _gradient_with(project=lambda d: not d, normalise=False),
        "the projection uses V instead of the unit direction",
    ),
    "norm_over_dim0": (
        lambda g, V, m, detach_norm=True: m / V.norm(dim=0, keepdim=True) * g,
        "‖V‖ is taken over dim=0",
    ),
    "returns_none": (lambda g, V, m, detach_norm=True: None, "is None: did you forget a `return` statement?"),
    "transposed": (
        lambda g, V, m, detach_norm=True: gradient_reference(g, V, m, detach_norm).T,
        "the result is transposed",
    ),
    "nan": (lambda g, V, m, detach_norm=True: g * math.nan, "contains 54 NaN"),
    "modifies_input": (_gradient_in_place, "modified its argument grad_weight in place"),
    "raises": (lambda g, V, m, detach_norm=True: g @ V, "raised RuntimeError"),
}


@pytest.mark.parametrize("dora_direction_gradient, message", GRADIENT_MISTAKES.values(), ids=GRADIENT_MISTAKES.keys())
def test_check_dora_direction_gradient_explains_each_mistake(dora_direction_gradient, message):
    with pytest.raises(AssertionError, match=phrase(message)) as info:
        check_dora_direction_gradient(dora_direction_gradient)
    assert leaks(str(info.value)) == []


def test_no_message_states_the_gradient_it_asks_for():
    """The messages name the mistake and the paper's section; the formulas are for the student to derive."""
    for wrong, _ in GRADIENT_MISTAKES.values():
        with pytest.raises(AssertionError) as info:
            check_dora_direction_gradient(wrong)
        assert "(m/‖V‖)·(g" not in str(info.value) and "(m/||V||)·(g" not in str(info.value)
