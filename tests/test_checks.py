"""The checks of Exercises 1–3: correct answers (several ways of writing them) pass, every known mistake fails with its message.

Each wrong or alternative implementation below is what a student could write in the notebook; the checks compare it
with PEFT's DoRA (LoraConfig(use_dora=True)) and autograd, never with a copy of the solution.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labhelpers.checks import check_decompose_weight, check_dora_direction_gradient, check_dora_linear
from tests.support.notebook import notebook_calls

# The notebook's visible and hidden check calls, read from solutions/dora/dora_lab.ipynb (plus a float32 run).
DECOMPOSE_CONFIGS = notebook_calls("check_decompose_weight")
DORA_LINEAR_CONFIGS = {**notebook_calls("check_dora_linear"), "float32": {"dtype": torch.float32}}
GRADIENT_CONFIGS = notebook_calls("check_dora_direction_gradient")


def _phrase(phrase: str) -> str:
    """Match phrase literally, whatever the case of its first letter (hints start a sentence in the message)."""
    return "(?i)" + re.escape(phrase)


# ------------------------------------------------------------------------------------------------
# Exercise 1: decompose_weight
# ------------------------------------------------------------------------------------------------


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
        "magnitude returned by decompose_weight(W) with W of shape (7, 5), float64 has shape (1, 5), expected (7, 1): you took the norm over dim=0",
    ),
    "norm_over_dim0_no_keepdim": (lambda W: (W.norm(dim=0), W / W.norm(dim=0)), "you took the norm over dim=0"),
    "no_keepdim": (lambda W: (W.norm(dim=1), W), "keep the reduced dimension (keepdim=True)"),
    "epsilon_on_magnitude": (
        lambda W: (W.norm(dim=1, keepdim=True) + 1e-6, W / (W.norm(dim=1, keepdim=True) + 1e-6)),
        "you added an epsilon to the magnitude (or clamped it). Clamp the denominator, not the magnitude",
    ),
    "magnitude_broadcast": (
        lambda W: (W.norm(dim=1, keepdim=True) * W.norm(dim=1), W / W.norm(dim=1, keepdim=True)),
        "has shape (7, 7), expected (7, 1): a larger shape than expected usually comes from broadcasting",
    ),
    "squared_norm": (lambda W: ((W**2).sum(1, keepdim=True), W / W.norm(dim=1, keepdim=True)), "not its square"),
    "l1_norm": (
        lambda W: (W.abs().sum(1, keepdim=True), W / W.abs().sum(1, keepdim=True)),
        "not the sum of absolute values",
    ),
    "magnitude_ones": (lambda W: (torch.ones(W.shape[0], 1, dtype=W.dtype), W), "the magnitude is all ones"),
    "direction_not_unit": (
        lambda W: (W.norm(dim=1, keepdim=True), W / W.norm(dim=1, keepdim=True).clamp_min(1e-12) ** 2),
        "every non-zero row of direction should have norm 1",
    ),
    "direction_transposed": (
        lambda W: (W.norm(dim=1, keepdim=True), (W / W.norm(dim=1, keepdim=True)).T),
        "it is transposed",
    ),
    "nan_on_zero_row": (
        lambda W: (W.norm(dim=1, keepdim=True), W / W.norm(dim=1, keepdim=True)),
        "row 3 all zero contains 5 NaN and 0 infinite values",
    ),
    "modifies_W": (_decompose_in_place, "modified W in place"),
    "changes_dtype": (lambda W: decompose_reference(W.double()), "has dtype torch.float64, expected torch.float32"),
    "returns_none": (lambda W: None, "returned None: did you forget `return magnitude, direction`?"),
    "returns_one_tensor": (
        lambda W: W / W.norm(dim=1, keepdim=True),
        "should return two tensors, `return magnitude, direction`, but returned a single tensor of shape (7, 5)",
    ),
    "returns_three_values": (lambda W: (*decompose_reference(W), W), "but returned a tuple of length 3"),
    "returns_numpy": (
        lambda W: tuple(t.numpy() for t in decompose_reference(W)),
        "should be a torch.Tensor but is a ndarray",
    ),
    "raises": (_decompose_raises, "raised RuntimeError: The size of tensor a"),
    "not_implemented": (
        lambda W: (_ for _ in ()).throw(NotImplementedError()),
        "raised NotImplementedError: replace `raise NotImplementedError()`",
    ),
}


@pytest.mark.parametrize("decompose_weight, phrase", DECOMPOSE_MISTAKES.values(), ids=DECOMPOSE_MISTAKES.keys())
def test_check_decompose_weight_explains_each_mistake(decompose_weight, phrase, capsys):
    with pytest.raises(AssertionError, match=_phrase(phrase)):
        check_decompose_weight(decompose_weight)
    assert "✔" not in capsys.readouterr().out


def test_dim0_message_explains_the_paper_notation():
    with pytest.raises(AssertionError) as info:
        check_decompose_weight(_decompose_dim0)
    message = str(info.value)
    assert "one magnitude per output feature: the norm over dim=1 of the (out, in) weight" in message
    assert "as PEFT and the authors' code compute it" in message


# ------------------------------------------------------------------------------------------------
# Exercise 2: DoRALinear
# ------------------------------------------------------------------------------------------------


class ReferenceDoRALinear(nn.Module):
    """The notebook's solution: PEFT's formula, reusing the base output."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = r
        self.scaling = lora_alpha / r
        self.weight = nn.Parameter(base_layer.weight.detach(), requires_grad=False)
        self.bias = None if base_layer.bias is None else nn.Parameter(base_layer.bias.detach(), requires_grad=False)
        self.magnitude = nn.Parameter(torch.linalg.vector_norm(self.weight, dim=1, keepdim=True))
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, dtype=self.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=self.weight.dtype))
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()

    def forward(self, x):
        base = x @ self.weight.T
        V = self.weight + self.scaling * (self.lora_B @ self.lora_A)
        scale = self.magnitude.T / torch.linalg.vector_norm(V, dim=1).detach()
        x_d = self.lora_dropout(x)
        lora = (x_d @ self.lora_A.T) @ self.lora_B.T
        base_d = base if x_d is x else x_d @ self.weight.T
        out = base + (scale - 1) * base_d + scale * self.scaling * lora
        return out if self.bias is None else out + self.bias


class MergedDeltaDoRALinear(ReferenceDoRALinear):
    """Materialises the adapted weight: y = base(x) + x_d (m·V/||V|| - W)ᵀ."""

    def forward(self, x):
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        W_prime = self.magnitude * V / V.norm(dim=1, keepdim=True).detach()
        return F.linear(x, self.weight, self.bias) + F.linear(self.lora_dropout(x), W_prime - self.weight)


class SubmoduleEinsumDoRALinear(nn.Module):
    """Keeps the frozen base layer as a submodule, uses einsum, sqrt of a sum of squares with clamp_min, always nn.Dropout."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.base_layer = base_layer.requires_grad_(False)
        self.weight, self.bias = base_layer.weight, base_layer.bias
        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r
        self.scaling = lora_alpha / r
        W = self.weight.detach()
        self.magnitude = nn.Parameter(torch.stack([row.pow(2).sum().sqrt() for row in W]).unsqueeze(-1))
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features, dtype=W.dtype) / math.sqrt(self.in_features))
        self.lora_B = nn.Parameter(torch.zeros_like(W[:, :r]))
        self.lora_dropout = nn.Dropout(lora_dropout)

    def forward(self, x):
        V = self.weight + self.scaling * torch.einsum("or,ri->oi", self.lora_B, self.lora_A)
        norm = V.pow(2).sum(dim=1).sqrt().clamp_min(1e-12).detach()
        factor = self.magnitude.squeeze(1) / norm
        if not self.training:
            return torch.einsum("...i,oi->...o", x, factor[:, None] * V) + (0 if self.bias is None else self.bias)
        x_d = self.lora_dropout(x)
        adapter = torch.einsum(
            "...i,oi->...o",
            x_d,
            (factor[:, None] - 1) * self.weight + factor[:, None] * self.scaling * self.lora_B @ self.lora_A,
        )
        return self.base_layer(x) + adapter


class EpsilonDoRALinear(ReferenceDoRALinear):
    """Divides by (norm + 1e-12) and uses functional dropout with the module's p."""

    def forward(self, x):
        V = self.weight + self.scaling * (self.lora_B @ self.lora_A)
        norm = torch.linalg.norm(V, dim=1, keepdim=True).detach() + 1e-12
        factor = (self.magnitude / norm).view(-1)
        p = self.lora_dropout.p if isinstance(self.lora_dropout, nn.Dropout) else 0.0
        x_d = F.dropout(x, p, self.training) if p > 0 else x
        result = F.linear(x, self.weight, self.bias)
        return (
            result
            + (factor - 1) * F.linear(x_d, self.weight)
            + factor * self.scaling * F.linear(F.linear(x_d, self.lora_A), self.lora_B)
        )


@pytest.mark.parametrize("config", DORA_LINEAR_CONFIGS.values(), ids=DORA_LINEAR_CONFIGS.keys())
@pytest.mark.parametrize(
    "DoRALinear",
    [ReferenceDoRALinear, MergedDeltaDoRALinear, SubmoduleEinsumDoRALinear, EpsilonDoRALinear],
    ids=lambda cls: cls.__name__.removesuffix("DoRALinear"),
)
def test_check_dora_linear_accepts_correct_layers(DoRALinear, config, capsys):
    assert check_dora_linear(DoRALinear, **config) is None
    out = capsys.readouterr().out
    assert out.startswith(f"✔ {DoRALinear.__name__} passed:") and out.count("\n") == 1


def _init_then(change):
    """Build a reference layer, then apply change(layer, base_layer) at the end of __init__ (a wrong init)."""

    class Layer(ReferenceDoRALinear):
        def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
            super().__init__(base_layer, r, lora_alpha, lora_dropout)
            change(self, base_layer)

    return Layer


def _set(name, make):
    """A wrong init that sets layer.<name> = make(layer, base_layer)."""

    def change(layer, base_layer):
        value = make(layer, base_layer)
        if name in layer._parameters:
            del layer._parameters[name]
        setattr(layer, name, value)

    return _init_then(change)


def _forward(body):
    """A reference layer whose forward is body(layer, x) (a wrong forward)."""
    return type("Layer", (ReferenceDoRALinear,), {"forward": lambda self, x: body(self, x)})


def _merged(layer, x, V=None, norm=None, magnitude=None, bias=True):
    """Eval-mode DoRA through the merged weight, with the pieces a student may get wrong."""
    V = layer.weight + layer.scaling * layer.lora_B @ layer.lora_A if V is None else V
    norm = V.norm(dim=1, keepdim=True).detach() if norm is None else norm
    magnitude = layer.magnitude if magnitude is None else magnitude
    y = x @ (magnitude * V / norm).T
    return y + layer.bias if bias and layer.bias is not None else y


def _dropout_everywhere(layer, x):
    return _merged(layer, layer.lora_dropout(x))


def _dropout_lora_only(layer, x):
    V = layer.weight + layer.scaling * layer.lora_B @ layer.lora_A
    factor = (layer.magnitude / V.norm(dim=1, keepdim=True).detach()).T
    x_d = layer.lora_dropout(x)
    y = factor * (x @ layer.weight.T) + factor * layer.scaling * (x_d @ layer.lora_A.T @ layer.lora_B.T)
    return y + layer.bias if layer.bias is not None else y


def _dropout_twice(layer, x):
    V = layer.weight + layer.scaling * layer.lora_B @ layer.lora_A
    factor = (layer.magnitude / V.norm(dim=1, keepdim=True).detach()).T
    y = x @ layer.weight.T + (factor - 1) * (layer.lora_dropout(x) @ layer.weight.T)
    y = y + factor * layer.scaling * (layer.lora_dropout(x) @ layer.lora_A.T @ layer.lora_B.T)
    return y + layer.bias if layer.bias is not None else y


def _bias_scaled(layer, x):
    V = layer.weight + layer.scaling * layer.lora_B @ layer.lora_A
    factor = layer.magnitude / V.norm(dim=1, keepdim=True).detach()
    return F.linear(x, factor * V, None if layer.bias is None else factor.view(-1) * layer.bias)


def _matrix_products_only(layer, x):
    """The reference formula with torch.mm, which accepts 2-D inputs only."""
    V = layer.weight + layer.scaling * torch.mm(layer.lora_B, layer.lora_A)
    factor = (layer.magnitude / V.norm(dim=1, keepdim=True).detach()).T
    x_d = layer.lora_dropout(x)
    y = torch.mm(x, layer.weight.T) + (factor - 1) * torch.mm(x_d, layer.weight.T)
    y = y + factor * layer.scaling * torch.mm(torch.mm(x_d, layer.lora_A.T), layer.lora_B.T)
    return y + layer.bias if layer.bias is not None else y


def _modify_base_in_place(layer, base_layer):
    with torch.no_grad():
        base_layer.weight.div_(layer.magnitude)


class NotAModule:
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        self.weight = base_layer.weight


class NoScaling(ReferenceDoRALinear):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer, r, lora_alpha, lora_dropout)
        del self.scaling


class ReleaseSkeleton(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        raise NotImplementedError()


DORA_LINEAR_MISTAKES = {
    # Magnitude: axis, shape, init, trainability.
    "magnitude_over_dim0": (
        _set("magnitude", lambda ly, b: nn.Parameter(ly.weight.norm(dim=0, keepdim=True))),
        "DoRALinear.magnitude has shape (1, 10), expected (6, 1): you took the norm over dim=0",
    ),
    "magnitude_1d": (
        _set("magnitude", lambda ly, b: nn.Parameter(ly.weight.norm(dim=1))),
        "keep the reduced dimension (keepdim=True)",
    ),
    "magnitude_ones": (
        _set("magnitude", lambda ly, b: nn.Parameter(torch.ones_like(ly.magnitude))),
        "magnitude starts at ones: initialise it to the row norms",
    ),
    "magnitude_squared": (
        _set("magnitude", lambda ly, b: nn.Parameter(ly.magnitude.detach() ** 2)),
        "magnitude starts at the squared row norms",
    ),
    "magnitude_frozen": (
        _set("magnitude", lambda ly, b: nn.Parameter(ly.magnitude.detach(), requires_grad=False)),
        "magnitude is not trainable: DoRALinear.magnitude is an nn.Parameter with requires_grad=False",
    ),
    "magnitude_buffer": (
        _set("magnitude", lambda ly, b: ly.magnitude.detach().clone()),
        "magnitude is not trainable: DoRALinear.magnitude is a plain tensor",
    ),
    "magnitude_detached_in_forward": (
        _forward(lambda ly, x: _merged(ly, x, magnitude=ly.magnitude.detach())),
        "magnitude gets no gradient",
    ),
    # Scaling.
    "scaling_attribute_alpha": (
        _set("scaling", lambda ly, b: float(ly.scaling * ly.r)),
        "DoRALinear.scaling is 6, which is lora_alpha alone, expected lora_alpha / r = 6 / 4 = 1.5",
    ),
    "scaling_attribute_r_over_alpha": (
        _set("scaling", lambda ly, b: ly.r / (ly.scaling * ly.r)),
        "which is r / lora_alpha",
    ),
    "scaling_attribute_one": (_set("scaling", lambda ly, b: 1.0), "which is no scaling at all"),
    "forward_without_scaling": (
        _forward(lambda ly, x: _merged(ly, x, V=ly.weight + ly.lora_B @ ly.lora_A)),
        "the LoRA update is not scaled: multiply B @ A by scaling = lora_alpha / r = 6 / 4 = 1.5",
    ),
    "forward_scaled_by_alpha": (
        _forward(lambda ly, x: _merged(ly, x, V=ly.weight + 6.0 * ly.lora_B @ ly.lora_A)),
        "the LoRA update is scaled by lora_alpha alone",
    ),
    "forward_scaled_by_r_over_alpha": (
        _forward(lambda ly, x: _merged(ly, x, V=ly.weight + (4 / 6) * ly.lora_B @ ly.lora_A)),
        "the LoRA update is scaled by r / lora_alpha",
    ),
    "no_scaling_and_norm_of_W": (
        _forward(
            lambda ly, x: _merged(ly, x, V=ly.weight + ly.lora_B @ ly.lora_A, norm=ly.weight.norm(dim=1, keepdim=True))
        ),
        "Two mistakes together: (1) the LoRA update is not scaled: multiply B @ A by scaling = lora_alpha / r = 6 / 4 = "
        "1.5 (in the output and in the norm). (2) the norm is of the frozen W alone",
    ),
    "norm_without_scaling": (
        _forward(
            lambda ly, x: _merged(ly, x, norm=(ly.weight + ly.lora_B @ ly.lora_A).norm(dim=1, keepdim=True).detach())
        ),
        "the norm uses a different scaling than the output",
    ),
    # lora_A / lora_B.
    "lora_B_random": (
        _set("lora_B", lambda ly, b: nn.Parameter(torch.randn_like(ly.lora_B))),
        "lora_B is not zero at the start",
    ),
    "inits_swapped": (
        _init_then(lambda ly, b: (ly.lora_B.data.normal_(), ly.lora_A.data.zero_())),
        "the inits of lora_A and lora_B are swapped",
    ),
    "lora_A_zero": (_init_then(lambda ly, b: ly.lora_A.data.zero_()), "lora_A is all zeros at the start"),
    "lora_A_transposed": (
        _set("lora_A", lambda ly, b: nn.Parameter(ly.lora_A.detach().T.contiguous())),
        "DoRALinear.lora_A has shape (10, 4), expected (4, 10): PEFT's lora_A is (r, in_features)",
    ),
    "lora_as_nn_linear": (
        _set("lora_B", lambda ly, b: nn.Linear(ly.r, ly.out_features, bias=False, dtype=ly.weight.dtype)),
        "DoRALinear.lora_B is an nn.Linear",
    ),
    "lora_A_default_dtype": (
        _set("lora_A", lambda ly, b: nn.Parameter(torch.randn(ly.r, ly.in_features))),
        "DoRALinear.lora_A has dtype torch.float32 on cpu, but the base layer is torch.float64",
    ),
    # Norm.
    "norm_not_detached": (
        _forward(
            lambda ly, x: _merged(
                ly, x, norm=(ly.weight + ly.scaling * ly.lora_B @ ly.lora_A).norm(dim=1, keepdim=True)
            )
        ),
        "the gradient matches DoRA WITHOUT a detached norm",
    ),
    "norm_over_dim0_in_forward": (
        _forward(
            lambda ly, x: _merged(
                ly, x, norm=(ly.weight + ly.scaling * ly.lora_B @ ly.lora_A).norm(dim=0, keepdim=True).detach()
            )
        ),
        "the norm in forward is taken over dim=0",
    ),
    "norm_of_frozen_W": (
        _forward(lambda ly, x: _merged(ly, x, norm=ly.weight.norm(dim=1, keepdim=True))),
        "the norm is of the frozen W alone",
    ),
    "magnitude_ignored": (_forward(lambda ly, x: _merged(ly, x, magnitude=1.0)), "the output ignores magnitude"),
    # Frozen base layer and bias.
    "base_weight_trainable": (
        _set("weight", lambda ly, b: nn.Parameter(b.weight.detach().clone())),
        "the base weight is trainable",
    ),
    "base_layer_not_frozen": (
        _init_then(lambda ly, b: setattr(ly, "base_layer", b)),
        "trainable parameters, expected r*(in+out)+out = 70: only magnitude, lora_A and lora_B should be trainable, but the trainable ones are: magnitude (6, 1), lora_A (4, 10), lora_B (6, 4), base_layer.weight (6, 10)",
    ),
    "bias_lost": (_set("bias", lambda ly, b: None), "the base bias is lost"),
    "bias_trainable": (
        _set("bias", lambda ly, b: nn.Parameter(b.bias.detach().clone())),
        "the base bias is trainable",
    ),
    "bias_not_added": (
        _forward(lambda ly, x: _merged(ly, x, bias=False)),
        "the bias of base_layer is missing from the output",
    ),
    "bias_scaled": (_forward(_bias_scaled), "the bias is multiplied by magnitude / ||V||"),
    "bias_twice": (
        _forward(lambda ly, x: _merged(ly, x) + (ly.bias if ly.bias is not None else 0)),
        "the bias is added twice",
    ),
    "base_weight_modified_in_place": (
        _init_then(_modify_base_in_place),
        "changed base_layer's weight or bias in place",
    ),
    # Dropout.
    "dropout_on_base_path": (
        _forward(_dropout_everywhere),
        "the output should equal base_layer(x) exactly, but it differs: dropout is applied to the frozen base path too",
    ),
    "dropout_never_applied": (_forward(lambda ly, x: _merged(ly, x)), "in train mode no dropout is applied"),
    "dropout_only_on_lora_term": (_forward(_dropout_lora_only), "the (m/||V|| - 1)·x Wᵀ correction uses the clean x"),
    "dropout_called_twice": (
        _forward(_dropout_twice),
        "Call self.lora_dropout once and use the same x_d in both adapter terms",
    ),
    "dropout_identity": (
        _set("lora_dropout", lambda ly, b: nn.Identity()),
        "DoRALinear.lora_dropout is nn.Identity but lora_dropout=0.25",
    ),
    # Malformed answers.
    "forward_returns_none": (_forward(lambda ly, x: None), "is None: did you forget a `return` statement?"),
    "forward_raises": (_forward(lambda ly, x: x @ ly.weight), "raised RuntimeError"),
    "forward_nan": (_forward(lambda ly, x: _merged(ly, x) * math.nan), "contains 48 NaN"),
    "forward_wrong_shape": (_forward(lambda ly, x: _merged(ly, x).sum(-1)), "has shape (8,), expected (8, 6)"),
    "forward_2d_only": (
        _forward(_matrix_products_only),
        "on x of shape (2, 3, 10) raised RuntimeError: self must be a matrix",
    ),
    "forward_without_grad": (_forward(lambda ly, x: _merged(ly, x).detach()), "does not require grad"),
    "not_a_module": (NotAModule, "not an nn.Module"),
    "missing_attribute": (NoScaling, "DoRALinear has no attribute `scaling`"),
    "release_skeleton": (ReleaseSkeleton, "replace `raise NotImplementedError()` with your code"),
}


@pytest.mark.parametrize("DoRALinear, phrase", DORA_LINEAR_MISTAKES.values(), ids=DORA_LINEAR_MISTAKES.keys())
def test_check_dora_linear_explains_each_mistake(DoRALinear, phrase, capsys):
    with pytest.raises(AssertionError, match=_phrase(phrase)):
        check_dora_linear(DoRALinear)
    assert "✔" not in capsys.readouterr().out


def test_check_dora_linear_restores_the_random_state_and_thread_count():
    torch.manual_seed(1234)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    check_dora_linear(ReferenceDoRALinear, shapes=[(3, 5)], seeds=[0])
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    with pytest.raises(AssertionError):
        check_dora_linear(DORA_LINEAR_MISTAKES["lora_B_random"][0])
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def test_exceptions_inside_the_layer_keep_their_cause():
    with pytest.raises(AssertionError) as info:
        check_dora_linear(DORA_LINEAR_MISTAKES["forward_raises"][0])
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "Fix the error in your code" in str(info.value)


# ------------------------------------------------------------------------------------------------
# Exercise 3: dora_direction_gradient
# ------------------------------------------------------------------------------------------------


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
        "with detach_norm=False the norm also gets a gradient: subtract the component along the direction",
    ),
    "always_projects": (_gradient_with(project=True), "with detach_norm=True the norm is a constant"),
    "flag_inverted": (
        _gradient_with(project=lambda detach_norm: detach_norm),
        "with detach_norm=True the norm is a constant",
    ),
    "projection_over_columns": (_gradient_with(project=lambda d: not d, dim=0), "the projection is over columns"),
    "factor_missing": (
        _gradient_with(project=lambda d: not d, factor=lambda m, n: 1.0),
        "the factor m/||V|| is missing",
    ),
    "factor_inverted": (_gradient_with(project=lambda d: not d, factor=lambda m, n: n / m), "the factor is inverted"),
    "projection_added": (_gradient_with(project=lambda d: not d, sign=1.0), "the projection is added"),
    "projection_not_normalised": (
        _gradient_with(project=lambda d: not d, normalise=False),
        "the projection uses V instead of the unit direction",
    ),
    "norm_over_dim0": (
        lambda g, V, m, detach_norm=True: m / V.norm(dim=0, keepdim=True) * g,
        "||V|| is taken over dim=0",
    ),
    "returns_none": (lambda g, V, m, detach_norm=True: None, "is None: did you forget a `return` statement?"),
    "transposed": (
        lambda g, V, m, detach_norm=True: gradient_reference(g, V, m, detach_norm).T,
        "has shape (9, 6), expected (6, 9)",
    ),
    "nan": (lambda g, V, m, detach_norm=True: g * math.nan, "contains 54 NaN"),
    "modifies_input": (_gradient_in_place, "modified its argument grad_weight in place"),
    "raises": (lambda g, V, m, detach_norm=True: g @ V, "raised RuntimeError"),
}


@pytest.mark.parametrize("dora_direction_gradient, phrase", GRADIENT_MISTAKES.values(), ids=GRADIENT_MISTAKES.keys())
def test_check_dora_direction_gradient_explains_each_mistake(dora_direction_gradient, phrase):
    with pytest.raises(AssertionError, match=_phrase(phrase)):
        check_dora_direction_gradient(dora_direction_gradient)
