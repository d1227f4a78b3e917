"""Exercise 5's check: correct magnitude_direction_change answers pass, every known mistake fails with its message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labhelpers.checks import check_magnitude_direction_change
from labhelpers.weights import magnitude_direction_change
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks


def _measure_variant(kind):
    def measure(W0, W):
        dim = 0 if kind == "columns" else 1
        n0, n = torch.linalg.vector_norm(W0, dim=dim), torch.linalg.vector_norm(W, dim=dim)
        cos = F.cosine_similarity(W, W0, dim=dim)
        delta_m = (n - n0).mean() if kind == "signed" else (n - n0).abs().mean()
        delta_d = cos.mean() if kind == "cos" else (1 - cos).mean()
        if kind == "norm-of-difference":
            delta_m = torch.linalg.vector_norm(W - W0, dim=1).mean()
        if kind == "tensors":
            return delta_m, delta_d
        if kind == "swapped":
            return delta_d.item(), delta_m.item()
        if kind == "in-place":
            W0 /= 2
        return delta_m.item(), delta_d.item()

    return measure


@pytest.mark.parametrize(
    "config",
    notebook_calls("check_magnitude_direction_change").values(),
    ids=notebook_calls("check_magnitude_direction_change"),
)
@pytest.mark.parametrize(
    "measure", [magnitude_direction_change, _measure_variant("solution")], ids=["reference", "cosine-similarity"]
)
def test_measure_check_accepts_correct_answers(measure, config, capsys):
    assert check_magnitude_direction_change(measure, **config) is None
    assert "✔ magnitude_direction_change passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kind, message",
    [
        ("columns", r"(?i)both numbers match norms and cosines over dim=0"),
        ("cos", r"mean cosine similarity"),
        ("signed", r"signed differences"),
        ("norm-of-difference", r"norm of the difference"),
        ("swapped", r"ΔM and ΔD are swapped: the order is \(delta_m, delta_d\)"),
        ("tensors", r"should be one Python float, the mean over rows"),
        ("in-place", r"in place"),
    ],
    ids=lambda v: v if "\\" not in v and "(" not in v else None,
)
def test_measure_check_names_the_mistake(kind, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_magnitude_direction_change(_measure_variant(kind))
    assert leaks(str(info.value)) == []
