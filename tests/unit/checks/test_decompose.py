"""Exercise 1's check: correct decompose_weight answers (several ways) pass, every known mistake fails with its message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labhelpers.checks import check_decompose_weight
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks, phrase

# The notebook's visible and hidden check calls, read from solutions/dora/dora_lab.ipynb.
DECOMPOSE_CONFIGS = notebook_calls("check_decompose_weight")


def decompose_reference(W):
    magnitude = torch.linalg.vector_norm(W, dim=1, keepdim=True)
    return magnitude, W / torch.where(magnitude == 0, torch.ones_like(magnitude), magnitude)


def decompose_row_loop(W):
    norms = [torch.sqrt((row * row).sum()) for row in W]
    rows = [row / n if n > 0 else torch.zeros_like(row) for row, n in zip(W, norms)]
    return torch.stack(norms).unsqueeze(1), torch.stack(rows)


def decompose_einsum_clamp(W):
    magnitude = torch.einsum("oi,oi->o", W, W).sqrt()[:, None]
    return magnitude, W / magnitude.clamp_min(1e-12)


def decompose_epsilon_added(W):
    magnitude = W.norm(p=2, dim=1, keepdim=True)
    return magnitude, W / (magnitude + 1e-12)


def decompose_normalize(W):
    return torch.linalg.norm(W, dim=-1, keepdim=True), F.normalize(W, dim=-1)


def decompose_nan_to_num(W):
    magnitude = W.pow(2).sum(dim=1, keepdim=True).sqrt()
    return magnitude, torch.nan_to_num(W / magnitude)


@pytest.mark.parametrize("config", DECOMPOSE_CONFIGS.values(), ids=DECOMPOSE_CONFIGS.keys())
@pytest.mark.parametrize(
    "decompose_weight",
    [
        decompose_reference,
        decompose_row_loop,
        decompose_einsum_clamp,
        decompose_epsilon_added,
        decompose_normalize,
        decompose_nan_to_num,
    ],
    ids=lambda f: f.__name__.removeprefix("decompose_"),
)
def test_check_decompose_weight_accepts_correct_answers(decompose_weight, config, capsys):
    assert check_decompose_weight(decompose_weight, **config) is None
    out = capsys.readouterr().out
    assert out.startswith("✔ decompose_weight passed:") and out.count("\n") == 1


def _decompose_dim0(W):
    magnitude = W.norm(dim=0, keepdim=True)
    return magnitude, W / magnitude


def _decompose_in_place(W):
    magnitude = W.norm(dim=1, keepdim=True)
    W /= magnitude.clamp_min(1e-12)
    return magnitude, W


def _decompose_raises(W):
    return W.norm(dim=1, keepdim=True), W / W.norm(dim=0, keepdim=True).T  # (out, in) / (in, 1) fails on non-square W


DECOMPOSE_MISTAKES = {
    "norm_over_dim0": (
        _decompose_dim0,
        "you took the norm over dim=0, which gives one number per input feature (a column).",
    ),
    "norm_over_dim0_no_keepdim": (lambda W: (W.norm(dim=0), W / W.norm(dim=0)), "you took the norm over dim=0"),
    "no_keepdim": (lambda W: (W.norm(dim=1), W), "the magnitude lost its reduced axis"),
    "epsilon_on_magnitude": (
        lambda W: (W.norm(dim=1, keepdim=True) + 1e-6, W / (W.norm(dim=1, keepdim=True) + 1e-6)),
        "you added an epsilon to the magnitude (or clamped it). The magnitude is the exact length of each row",
    ),
    "magnitude_broadcast": (
        lambda W: (W.norm(dim=1, keepdim=True) * W.norm(dim=1), W / W.norm(dim=1, keepdim=True)),
        "a shape larger than expected usually comes from broadcasting",
    ),
    "squared_norm": (
        lambda W: ((W**2).sum(1, keepdim=True), W / W.norm(dim=1, keepdim=True)),
        "the squared length of each row",
    ),
    "l1_norm": (
        lambda W: (W.abs().sum(1, keepdim=True), W / W.abs().sum(1, keepdim=True)),
        "the sum of absolute values of each row (the L1 norm)",
    ),
    "magnitude_ones": (lambda W: (torch.ones(W.shape[0], 1, dtype=W.dtype), W), "the magnitude is all ones"),
    "direction_not_unit": (
        lambda W: (W.norm(dim=1, keepdim=True), W / W.norm(dim=1, keepdim=True).clamp_min(1e-12) ** 2),
        "every non-zero row of the direction should have norm 1",
    ),
    "direction_transposed": (
        lambda W: (W.norm(dim=1, keepdim=True), (W / W.norm(dim=1, keepdim=True)).T),
        "the direction is transposed",
    ),
    "nan_on_zero_row": (
        lambda W: (W.norm(dim=1, keepdim=True), W / W.norm(dim=1, keepdim=True)),
        "an all-zero row has norm 0 and no direction",
    ),
    "modifies_W": (_decompose_in_place, "modified W in place"),
    "changes_dtype": (
        lambda W: decompose_reference(W.double()),
        "new tensors must keep the dtype of the inputs",
    ),
    "returns_none": (lambda W: None, "returned None: did you forget to return the magnitude and the direction?"),
    "returns_one_tensor": (
        lambda W: W / W.norm(dim=1, keepdim=True),
        "should return two tensors, the magnitude and then the direction. Expected a pair, got a single tensor of "
        "shape (7, 5)",
    ),
    "returns_three_values": (lambda W: (*decompose_reference(W), W), "Expected a pair, got a tuple of length 3"),
    "returns_numpy": (
        lambda W: tuple(t.numpy() for t in decompose_reference(W)),
        "should be a torch.Tensor, computed with torch operations",
    ),
    "raises": (_decompose_raises, "raised RuntimeError: The size of tensor a"),
    "not_implemented": (
        lambda W: (_ for _ in ()).throw(NotImplementedError()),
        "raised NotImplementedError: replace `raise NotImplementedError()`",
    ),
}


@pytest.mark.parametrize("decompose_weight, message", DECOMPOSE_MISTAKES.values(), ids=DECOMPOSE_MISTAKES.keys())
def test_check_decompose_weight_explains_each_mistake(decompose_weight, message, capsys):
    with pytest.raises(AssertionError, match=phrase(message)) as info:
        check_decompose_weight(decompose_weight)
    assert "✔" not in capsys.readouterr().out
    assert leaks(str(info.value)) == []


def test_dim0_message_asks_for_the_axis_and_names_the_evidence_after():
    with pytest.raises(AssertionError) as info:
        check_decompose_weight(_decompose_dim0)
    message = str(info.value)
    assert "DoRA keeps one magnitude per output feature, as the authors' code and PEFT compute it" in message
    assert "which axis of an (out, in) weight holds one output feature?" in message and "dim=1" not in message
    assert message.endswith("float64: expected shape (7, 1), got (1, 5).")
