"""The bonus's model answer, EfficientDoRALinear, against PEFT's DoRA in every dtype, including where numerics bite.

Both model answers are read from the solutions notebook (bench.load_classes); none of their code is copied here. The
yardstick is PEFT's own error: the layer under test and PEFT run in one dtype on the same stored values, and both are
compared with PEFT run in float64 on those values (cast up, exactly). The weights come in three kinds:

* random: rows of norm about 1;
* row_norm_300: one row of norm 300, whose squared norm (90000) overflows float16 (largest finite value 65504);
* cancelling_row: one row with s·B_i·A ≈ -W_i, so that ||W_i + s·B_i·A|| is about 1e-3·||W_i||, and a squared norm
  expanded as ||W_i||² + 2s·B_i·(A·W_iᵀ) + s²·||B_i·A||² is a small difference of large terms.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from labhelpers import bench
from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.checks import check_dora_linear
from labhelpers.models import peft_layer

OUT, IN, R, LORA_ALPHA, TOKENS = 48, 40, 8, 16.0, 24  # weight (OUT, IN): non-square
SCALING = LORA_ALPHA / R
LARGE_ROW, CANCELLED_ROW = 3, 5
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
ROUNDINGS = 8
"""An error of up to this many roundings of the dtype (its eps, times the case's conditioning) always passes."""


@dataclass(frozen=True)
class Case:
    name: str
    large_row: bool = False  # row LARGE_ROW scaled to norm 300
    cancelled_row: bool = False  # row CANCELLED_ROW nearly cancelled by the update

    def __str__(self) -> str:
        return self.name


CASES = [Case("random"), Case("row_norm_300", large_row=True), Case("cancelling_row", cancelled_row=True)]


@pytest.fixture(scope="module")
def model_answers() -> dict[str, type]:
    """DoRALinear (Exercise 2) and EfficientDoRALinear (the bonus), from the solutions notebook."""
    return bench.load_classes(SOURCE_NOTEBOOK, ["DoRALinear", "EfficientDoRALinear"])


@pytest.fixture(scope="module")
def naive_expansion(model_answers) -> type:
    """The mistake the bonus's numerics avoid: the expanded squared norm in the weight's own dtype, no fallback."""

    class NaiveExpansion(model_answers["EfficientDoRALinear"]):
        def weight_norm(self):
            W, A, B, s = self.weight, self.lora_A.detach(), self.lora_B.detach(), self.scaling
            sq_norm = W.square().sum(1) + 2 * s * (B * (W @ A.T)).sum(1) + s * s * ((B @ (A @ A.T)) * B).sum(1)
            return sq_norm.clamp_min(0).sqrt()

    return NaiveExpansion


class FixedDropout(nn.Module):
    """Dropout with p = 0.5 and a mask drawn in advance: every layer and dtype drops the same inputs, exactly."""

    def __init__(self, keep: torch.Tensor):
        super().__init__()
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2 * self.keep).to(x.dtype)  # 0 or 1 / (1 - p) = 2: exact in every dtype


def stored_values(case: Case, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """Draw the layer's values and one step's data in float64, round them to dtype, and return them in float64.

    Returns:
        weight (OUT, IN), bias (OUT,), lora_A (R, IN), lora_B (OUT, R), magnitude (OUT, 1), x (TOKENS, IN),
        grad_output (TOKENS, OUT), and keep (TOKENS, IN), the dropout mask.
    """
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    W, A, B = randn(OUT, IN) / IN**0.5, randn(R, IN) / IN**0.5, 0.3 * randn(OUT, R)
    if case.large_row:
        W[LARGE_ROW] *= 300 / W[LARGE_ROW].norm()
    if case.cancelled_row:
        update, noise = SCALING * B[CANCELLED_ROW] @ A, randn(IN)
        W[CANCELLED_ROW] = -update + 1e-3 * update.norm() * noise / noise.norm()
    growth = 1 + 0.3 * torch.rand(OUT, 1, generator=generator, dtype=torch.float64)
    values = {
        "weight": W,
        "bias": 0.1 * randn(OUT),
        "lora_A": A,
        "lora_B": B,
        "magnitude": W.norm(dim=1, keepdim=True) * growth,
        "x": randn(TOKENS, IN),
        "grad_output": randn(TOKENS, OUT),
    }
    keep = torch.rand(TOKENS, IN, generator=generator, dtype=torch.float64) > 0.5
    return {name: value.to(dtype).double() for name, value in values.items()} | {"keep": keep}


def conditioning(values: dict[str, torch.Tensor]) -> float:
    """Return max over rows of (||W_i|| + s·||B_i·A||) / ||W_i + s·B_i·A||: how much rounding the row norms amplify."""
    W, update = values["weight"], SCALING * values["lora_B"] @ values["lora_A"]
    return float(((W.norm(dim=1) + update.norm(dim=1)) / (W + update).norm(dim=1)).max())


def build(layer_class: type | None, values: dict, dtype: torch.dtype, dropout: bool) -> tuple[nn.Module, dict]:
    """Build a layer (None: PEFT's DoRA) holding `values` in dtype; return it and its trainable parameters by name."""
    base = nn.Linear(IN, OUT, dtype=dtype)
    with torch.no_grad():
        base.weight.copy_(values["weight"])
        base.bias.copy_(values["bias"])
    if layer_class is None:
        layer = peft_layer(base, use_dora=True, r=R, lora_alpha=LORA_ALPHA, lora_dropout=0.5).to(dtype)
        params = {
            "lora_A": layer.lora_A["default"].weight,
            "lora_B": layer.lora_B["default"].weight,
            "magnitude": layer.lora_magnitude_vector["default"].weight,  # PEFT's is (OUT,)
        }
        if dropout:
            layer.lora_dropout["default"] = FixedDropout(values["keep"])
    else:
        layer = layer_class(base, r=R, lora_alpha=LORA_ALPHA, lora_dropout=0.5)
        params = {"lora_A": layer.lora_A, "lora_B": layer.lora_B, "magnitude": layer.magnitude}
        if dropout:
            layer.lora_dropout = FixedDropout(values["keep"])
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(values[name].view(param.shape))
    # Without dropout: eval mode, where x_d = x and both layers reuse the frozen path's x Wᵀ.
    return layer.train(dropout), params


def training_step(layer_class: type | None, values: dict, dtype: torch.dtype, dropout: bool) -> dict:
    """Run one forward and backward pass in dtype; return the output and the gradients, in float64."""
    layer, params = build(layer_class, values, dtype, dropout)
    y = layer(values["x"].to(dtype))
    y.backward(values["grad_output"].to(dtype))
    return {"output": y.detach().double()} | {f"grad of {n}": p.grad.double().reshape(-1) for n, p in params.items()}


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """Return max |actual - reference| / max |reference|, inf when actual is not finite."""
    if not bool(torch.isfinite(actual).all()):
        return float("inf")
    return float((actual - reference).abs().max() / reference.abs().max())


def peft_comparison(layer_class: type, case: Case, dtype: torch.dtype, dropout: bool) -> list[str]:
    """Compare layer_class and PEFT, both in dtype, with PEFT in float64; return what is worse than PEFT, if anything.

    A quantity passes when its error is at most twice PEFT's, or at most ROUNDINGS roundings of the dtype amplified
    by the case's conditioning (in float64 PEFT is the reference itself, so that is the bound there).
    """
    values = stored_values(case, dtype)
    reference = training_step(None, values, torch.float64, dropout)
    peft = training_step(None, values, dtype, dropout)
    ours = training_step(layer_class, values, dtype, dropout)
    floor = ROUNDINGS * torch.finfo(dtype).eps * conditioning(values)
    failures = []
    for name, expected in reference.items():
        error, yardstick = relative_error(ours[name], expected), relative_error(peft[name], expected)
        if not error <= max(2 * yardstick, floor):
            failures.append(f"{name}: error {error:.1e} (PEFT's {yardstick:.1e}, floor {floor:.1e})")
    return failures


def weight_norm_error(layer_class: type, case: Case, dtype: torch.dtype) -> tuple[float, float]:
    """Return (the largest relative error of layer_class's weight_norm() over rows, the tolerance for it).

    The exact norms are those of the stored values, W + s·B·A computed in float64. The tolerance is ROUNDINGS
    roundings of float32 (float64 for a float64 weight, times the conditioning: the exact norms carry it themselves).
    """
    values = stored_values(case, dtype)
    layer, _ = build(layer_class, values, dtype, dropout=False)
    norm = layer.weight_norm()
    exact = (values["weight"] + SCALING * values["lora_B"] @ values["lora_A"]).norm(dim=1)
    accumulation = torch.promote_types(dtype, torch.float32)
    amplified = conditioning(values) if accumulation == torch.float64 else 1.0
    tolerance = ROUNDINGS * torch.finfo(accumulation).eps * amplified
    return relative_error(norm.double().reshape(-1), exact) if norm.shape == exact.shape else float("inf"), tolerance


@pytest.mark.parametrize("dropout", [False, True], ids=["eval", "train_dropout"])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_efficient_layer_is_as_accurate_as_peft(model_answers, dtype, case, dropout):
    failures = peft_comparison(model_answers["EfficientDoRALinear"], case, dtype, dropout)
    assert not failures, f"EfficientDoRALinear, {dtype}, {case}: " + "; ".join(failures)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_weight_norm_is_exact_for_the_stored_values(model_answers, dtype, case):
    """Float32 accumulation (float64 for float64 weights) and the direct norm of cancelled rows: every row is exact."""
    values = stored_values(case, dtype)
    layer, _ = build(model_answers["EfficientDoRALinear"], values, dtype, dropout=False)
    assert layer.weight_norm().dtype == torch.promote_types(dtype, torch.float32)
    error, tolerance = weight_norm_error(model_answers["EfficientDoRALinear"], case, dtype)
    assert error <= tolerance, f"weight_norm() is off by {error:.1e} (relative) in {dtype}, {case}"


@pytest.mark.parametrize(
    "dtype, case",
    [
        (torch.float16, CASES[1]),  # ||W_3||² = 90000 overflows float16: the norm is inf, the row's output the bias
        (torch.float32, CASES[2]),  # cancellation: the expanded squared norm keeps few digits
        (torch.bfloat16, CASES[2]),
    ],
    ids=["float16-row_norm_300", "float32-cancelling_row", "bfloat16-cancelling_row"],
)
def test_these_tests_catch_the_naive_expansion(naive_expansion, dtype, case):
    """The tests above can fail: the expanded norm in the weight's dtype, without fallback, fails both of them."""
    error, tolerance = weight_norm_error(naive_expansion, case, dtype)
    assert error > tolerance
    assert peft_comparison(naive_expansion, case, dtype, dropout=False)


def test_efficient_layer_passes_exercise_2_check_in_float32(model_answers):
    """The notebook runs the check in float64 (the default); here its hidden variant's float32 shapes."""
    check_dora_linear(
        model_answers["EfficientDoRALinear"], shapes=[(19, 6), (5, 40)], seeds=[21, 22], r=3, dtype=torch.float32
    )


@pytest.mark.parametrize("change", ["written_in_place", "converted_to_float64", "loaded_from_a_state_dict"])
def test_cached_weight_norm_follows_the_weight(model_answers, change):
    """The cached ||W_i||² is computed again when the weight changes; the state_dict holds no cache."""
    Efficient, Clear = model_answers["EfficientDoRALinear"], model_answers["DoRALinear"]
    generator = torch.Generator().manual_seed(0)
    base = nn.Linear(IN, OUT)
    fast = Efficient(copy.deepcopy(base), r=R, lora_alpha=LORA_ALPHA)
    with torch.no_grad():
        fast.lora_B.copy_(0.3 * torch.randn(OUT, R, generator=generator))
    x = torch.randn(TOKENS, IN, generator=generator)
    fast(x)  # fills the cache
    if change == "written_in_place":
        with torch.no_grad():
            fast.weight.mul_(2)
    elif change == "converted_to_float64":
        fast.double()
    else:
        fast.load_state_dict({**fast.state_dict(), "weight": 2 * fast.weight.detach()})
    clear = Clear(nn.Linear(IN, OUT, dtype=fast.weight.dtype), r=R, lora_alpha=LORA_ALPHA)
    assert set(fast.state_dict()) == set(clear.state_dict())
    clear.load_state_dict(fast.state_dict())
    x = x.to(fast.weight.dtype)
    torch.testing.assert_close(fast(x), clear(x))
