"""Exercise 2's check: correct DoRALinear layers (several ways) pass, every known mistake fails with its message.

Each wrong or alternative layer below is what a student could write in the notebook; the check compares it with
PEFT's DoRA (LoraConfig(use_dora=True)), never with a copy of the solution.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labhelpers.checks import check_dora_linear
from labhelpers.checks.core import is_close, recognise
from labhelpers.checks.dora_linear.formula import PEFT_DORA
from labhelpers.checks.dora_linear.mistakes import output_builder, output_mistakes
from labhelpers.checks.dora_linear.reference import peft_runs
from labhelpers.probes.core import isolated
from labhelpers.probes.dora_linear import DoRALinearSpec, cases
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks, phrase

# The notebook's visible and hidden check calls, read from solutions/dora/dora_lab.ipynb (plus a float32 run).
DORA_LINEAR_CONFIGS = {**notebook_calls("check_dora_linear"), "float32": {"dtype": torch.float32}}


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
        "you took the norm over dim=0, which gives one number per input feature (a column).",
    ),
    "magnitude_1d": (
        _set("magnitude", lambda ly, b: nn.Parameter(ly.weight.norm(dim=1))),
        "the magnitude lost its reduced axis",
    ),
    "magnitude_ones": (
        _set("magnitude", lambda ly, b: nn.Parameter(torch.ones_like(ly.magnitude))),
        "magnitude starts at ones: it starts at the length of each row of W0",
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
        "DoRALinear.scaling is lora_alpha alone: LoRA multiplies B·A by s = lora_alpha / r",
    ),
    "scaling_attribute_r_over_alpha": (
        _set("scaling", lambda ly, b: ly.r / (ly.scaling * ly.r)),
        "DoRALinear.scaling is r / lora_alpha",
    ),
    "scaling_attribute_one": (_set("scaling", lambda ly, b: 1.0), "DoRALinear.scaling is no scaling at all"),
    "forward_without_scaling": (
        _forward(lambda ly, x: _merged(ly, x, V=ly.weight + ly.lora_B @ ly.lora_A)),
        "the LoRA update is not scaled: V = W0 + s·B·A",
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
        "Two mistakes together: (1) the LoRA update is not scaled: V = W0 + s·B·A, the adapted weight before "
        "normalisation (paper Eq. 5, with LoRA's scaling s as in PEFT), with s = lora_alpha / r = 6 / 4 = 1.5, the same "
        "s in the output and in the norm. (2) the norm is of the frozen W alone",
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
        "DoRALinear.lora_A is transposed: lora_A is (r, in_features)",
    ),
    "lora_as_nn_linear": (
        _set("lora_B", lambda ly, b: nn.Linear(ly.r, ly.out_features, bias=False, dtype=ly.weight.dtype)),
        "DoRALinear.lora_B is an nn.Linear",
    ),
    "lora_A_default_dtype": (
        _set("lora_A", lambda ly, b: nn.Parameter(torch.randn(ly.r, ly.in_features))),
        "DoRALinear.lora_A is not in the base layer's dtype and device",
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
        "only magnitude, lora_A and lora_B should train, but the trainable parameters are: magnitude (6, 1), lora_A "
        "(4, 10), lora_B (6, 4), base_layer.weight (6, 10)",
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
    "bias_scaled": (_forward(_bias_scaled), "the bias is multiplied by m/‖V‖"),
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
        "dropout is applied to the frozen base path too: in train mode with lora_B = 0",
    ),
    "dropout_never_applied": (_forward(lambda ly, x: _merged(ly, x)), "in train mode no dropout is applied"),
    "dropout_only_on_lora_term": (_forward(_dropout_lora_only), "the (m/‖V‖ − 1)·x W0ᵀ correction uses the clean x"),
    "dropout_called_twice": (
        _forward(_dropout_twice),
        "draw the dropout once per forward and use the same x_d in both adapter terms",
    ),
    "dropout_identity": (
        _set("lora_dropout", lambda ly, b: nn.Identity()),
        "DoRALinear.lora_dropout is nn.Identity but lora_dropout=0.25",
    ),
    # Malformed answers.
    "forward_returns_none": (_forward(lambda ly, x: None), "is None: did you forget a `return` statement?"),
    "forward_raises": (_forward(lambda ly, x: x @ ly.weight), "raised RuntimeError"),
    "forward_nan": (_forward(lambda ly, x: _merged(ly, x) * math.nan), "contains 48 NaN"),
    "forward_wrong_shape": (_forward(lambda ly, x: _merged(ly, x).sum(-1)), "expected shape (8, 6), got (8,)"),
    "forward_2d_only": (
        _forward(_matrix_products_only),
        "on x of shape (2, 3, 10) raised RuntimeError: self must be a matrix",
    ),
    "forward_without_grad": (_forward(lambda ly, x: _merged(ly, x).detach()), "does not require grad"),
    "not_a_module": (NotAModule, "not an nn.Module"),
    "missing_attribute": (NoScaling, "DoRALinear has no attribute `scaling`"),
    "release_skeleton": (ReleaseSkeleton, "replace `raise NotImplementedError()` with your code"),
}


@pytest.mark.parametrize("DoRALinear, message", DORA_LINEAR_MISTAKES.values(), ids=DORA_LINEAR_MISTAKES.keys())
def test_check_dora_linear_explains_each_mistake(DoRALinear, message, capsys):
    with pytest.raises(AssertionError, match=phrase(message)) as info:
        check_dora_linear(DoRALinear)
    assert "✔" not in capsys.readouterr().out
    assert leaks(str(info.value)) == []


def test_check_dora_linear_restores_the_random_state_and_thread_count(three_threads):
    torch.manual_seed(1234)
    state, threads = torch.get_rng_state(), three_threads
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


def test_check_dora_linear_takes_the_specs_fields_as_keywords():
    """The notebook's keyword names are DoRALinearSpec's fields; any other is refused, naming the accepted ones."""
    check_dora_linear(ReferenceDoRALinear, shapes=[(3, 5)], seeds=[2], r=2, lora_alpha=4.0, lora_dropout=0.5,
                      dtype="float32", batch_size=3)  # fmt: skip
    with pytest.raises(TypeError, match=re.escape("this check takes batch_size, dtype, lora_alpha, lora_dropout, r")):
        check_dora_linear(ReferenceDoRALinear, shape=[(3, 5)])


# ------------------------------------------------------------------------------------------------
# The oracle and the catalogue of mistakes


def _cases(**settings):
    return list(cases(DoRALinearSpec.make(**settings)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_formula_written_out_is_peft_dora(dtype):
    """PEFT_DORA on a pass's inputs computes what PEFT's own layer computed, in eval and train mode."""
    with isolated():
        for case in _cases(shapes=[(6, 10)], dtype=dtype):
            for run in peft_runs(case):
                assert is_close(PEFT_DORA(run.inputs), run.output)


CATALOGUE = output_mistakes(r=4, lora_alpha=6.0, dropout=True)


@pytest.mark.parametrize("mistake", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_each_mistake_of_the_catalogue_is_recognised_from_its_own_output(mistake):
    """A layer making exactly this mistake gets this mistake's message, in a train-mode pass with dropout and bias."""
    with isolated():
        case = _cases()[0]
        run = next(run for run in peft_runs(case) if run.training)
        build = output_builder(run.inputs)
        assert not is_close(build(**mistake.changes), run.output)
        assert recognise(build(**mistake.changes), CATALOGUE, build) == [mistake]


def test_two_mistakes_in_different_parts_are_named_together():
    with isolated():
        run = next(run for run in peft_runs(_cases()[0]) if run.training)
        build = output_builder(run.inputs)
        unscaled, bias_lost = (next(m for m in CATALOGUE if m.name == name) for name in ("unscaled", "bias_lost"))
        assert recognise(build(scaling=1.0, bias="lost"), CATALOGUE, build) == [unscaled, bias_lost]
