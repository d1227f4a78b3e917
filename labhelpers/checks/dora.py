"""Checks of Exercises 1–3 (decompose_weight, DoRALinear, dora_direction_gradient) against PEFT's DoRA and autograd.

Conventions, as in nn.Linear and PEFT: a weight W is (out_features, in_features) and DoRA keeps one magnitude
per OUTPUT feature, the norm of each row (dim=1). The paper writes W as (in, out) (d × k) and takes the norm
of each column, which is the same thing; reading "column" literally on nn.Linear's weight (dim=0) is the
mistake these checks explain. Every shape argument below is a weight shape (out_features, in_features).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

import torch
from torch import nn

from labhelpers.checks.core import _is_close, _one_thread, assert_close, call_student, expect_tensor, passed

AXIS_EXPLANATION = (
    "DoRA keeps one magnitude per output feature: norm over dim=1 of the (out, in) weight. "
    "(The paper writes W as (in, out) and takes column norms; nn.Linear stores W as (out, in), "
    "so the paper's columns are the rows here.)"
)


def _dtype_name(dtype: torch.dtype) -> str:
    """Return 'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


def _shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    """Return '(7, 5), (3, 11)'."""
    return ", ".join(str(tuple(s)) for s in shapes)


def _randn(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Draw a standard normal tensor from generator, in float64 then cast (same values for every dtype)."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)


def _seed(seed: int) -> None:
    """Seed the CPU generator that nn.Linear's init and dropout draw from.

    Not torch.manual_seed: without a GPU it queues a lazy seeding call, with its stack trace, for every
    accelerator backend on every call, which makes a check of hundreds of seeded forwards slow.
    """
    torch.default_generator.manual_seed(seed)


def _row_norms(W: torch.Tensor) -> torch.Tensor:
    """Return the row norms of W as (out_features, 1)."""
    return torch.linalg.vector_norm(W, dim=1, keepdim=True)


def _first_match(actual: torch.Tensor, candidates: Sequence[tuple[str, Callable[[], torch.Tensor]]]) -> str | None:
    """Return the message of the first candidate (message, reference) that actual matches, else None."""
    for message, reference in candidates:
        expected = reference()
        if expected.shape == actual.shape and _is_close(actual, expected):
            return message
    return None


# --------------------------------------------------------------------------------------------------
# Exercise 1: decompose_weight
# --------------------------------------------------------------------------------------------------


def _unpack_decomposition(result: Any, what: str) -> tuple[Any, Any]:
    """Check that decompose_weight returned a pair and return it."""
    if result is None:
        raise AssertionError(f"{what} returned None: did you forget `return magnitude, direction`?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        if isinstance(result, torch.Tensor):
            got = f"a single tensor of shape {tuple(result.shape)}"
        raise AssertionError(f"{what} should return two tensors, `return magnitude, direction`, but returned {got}.")
    return result[0], result[1]


def _check_magnitude_shape(magnitude: Any, W: torch.Tensor, what: str) -> None:
    """Explain the usual wrong magnitude shapes (dim=0, no keepdim) before the generic shape check."""
    out_features, in_features = W.shape
    if isinstance(magnitude, torch.Tensor) and tuple(magnitude.shape) != (out_features, 1):
        shape = tuple(magnitude.shape)
        if shape in ((1, in_features), (in_features,), (in_features, 1)):
            raise AssertionError(
                f"{what} has shape {shape}, expected ({out_features}, 1): you took the norm over dim=0 "
                f"(one per input feature). {AXIS_EXPLANATION} Use torch.linalg.vector_norm(W, dim=1, keepdim=True)."
            )
        if shape == (out_features,):
            raise AssertionError(
                f"{what} has shape {shape}, expected ({out_features}, 1): keep the reduced dimension "
                f"(keepdim=True) so that magnitude broadcasts over each row of W."
            )
    expect_tensor(magnitude, what, shape=(out_features, 1))


@_one_thread()
def check_decompose_weight(
    decompose_weight: Callable,
    shapes: Sequence[Sequence[int]] = ((7, 5), (3, 11)),
    seeds: Sequence[int] = (0,),
    dtypes: Sequence[torch.dtype] = (torch.float64, torch.float32),
) -> None:
    """Check decompose_weight(W) -> (magnitude, direction) on random weights, with and without a zero row.

    Args:
        decompose_weight: the student's function; W: (out_features, in_features) ->
            magnitude (out_features, 1), direction (out_features, in_features).
        shapes: weight shapes (out_features, in_features) to try.
        seeds: random seeds of the weights.
        dtypes: floating dtypes to try.
    """
    n_checks = 0
    for shape, seed, dtype in product(shapes, seeds, dtypes):
        out_features, in_features = shape
        generator = torch.Generator().manual_seed(seed)
        W_random = _randn(shape, generator, dtype)
        for zero_row in (False, True):
            W = W_random.clone()
            if zero_row:
                W[out_features // 2] = 0
            W_before = W.clone()
            case = f"W of shape {tuple(shape)}, {_dtype_name(dtype)}" + (
                f", row {out_features // 2} all zero" if zero_row else ""
            )
            what = f"decompose_weight(W) with {case}"
            magnitude, direction = _unpack_decomposition(call_student(decompose_weight, W, what=what), what)
            if not torch.equal(W, W_before):
                raise AssertionError(
                    f"{what} modified W in place: compute new tensors (W / norm) instead of in-place "
                    f"operations (W /= norm, W.div_(...), W[...] = ...), since W is the layer's pretrained weight."
                )
            nan_hint = (
                "An all-zero row has no direction: divide it by 1 instead of 0 (or clamp the norm, norm.clamp_min(1e-12)) "
                "so that the row stays zero."
                if zero_row
                else ""
            )
            _check_magnitude_shape(magnitude, W, f"the magnitude returned by {what}")
            if isinstance(direction, torch.Tensor) and tuple(direction.shape) == (in_features, out_features):
                raise AssertionError(
                    f"the direction returned by {what} has shape {tuple(direction.shape)}, expected {tuple(shape)}: "
                    f"it is transposed; keep W's (out_features, in_features) layout."
                )
            for name, value in (("magnitude", magnitude), ("direction", direction)):
                expected_shape = (out_features, 1) if name == "magnitude" else tuple(shape)
                expect_tensor(
                    value, f"the {name} returned by {what}", shape=expected_shape, dtype=dtype, hint=nan_hint
                )
                if value.device != W.device:
                    raise AssertionError(
                        f"the {name} returned by {what} is on {value.device}, W on {W.device}: keep W's device "
                        f"(no .cpu()/.cuda(); create new tensors with device=W.device or *_like(W))."
                    )
            reference = _row_norms(W.double())
            if not _is_close(magnitude, reference.to(dtype)):
                message = _first_match(
                    magnitude,
                    [
                        (
                            "the magnitude should be the L2 norm of each row, not its square: take the square root "
                            "(torch.linalg.vector_norm(W, dim=1, keepdim=True)).",
                            lambda: reference**2,
                        ),
                        (
                            "the magnitude should be the L2 norm of each row, not the sum of absolute values (L1 norm).",
                            lambda: W.double().abs().sum(dim=1, keepdim=True),
                        ),
                        (
                            "the magnitude is all ones: it should be the norm of each row of W.",
                            lambda: torch.ones_like(reference),
                        ),
                    ],
                )
                assert_close(
                    magnitude,
                    reference,
                    f"the magnitude returned by {what}",
                    hint=message or "magnitude[i] should be the L2 norm of row i of W, ||W[i, :]||.",
                )
            nonzero = reference.view(-1) > 0
            assert_close(
                _row_norms(direction.double())[nonzero],
                torch.ones_like(reference[nonzero]).to(dtype),
                f"the row norms of the direction returned by {what}",
                hint="every non-zero row of direction should have norm 1: direction = W / magnitude.",
            )
            assert_close(
                (magnitude * direction),
                W,
                f"magnitude * direction returned by {what}",
                hint="magnitude * direction should rebuild W exactly; did you normalise over the wrong dimension or rescale W?",
            )
            n_checks += 1
    passed(
        "decompose_weight",
        f"{n_checks} checks on shapes {_shapes_text(shapes)} ({', '.join(_dtype_name(d) for d in dtypes)}, "
        f"with and without a zero row): row-norm magnitude, unit directions, exact reconstruction, W unchanged",
    )


# --------------------------------------------------------------------------------------------------
# Exercise 2: DoRALinear
# --------------------------------------------------------------------------------------------------


class _Holder(nn.Module):
    """A module holding one linear layer named `proj`, for PEFT to inject DoRA into."""

    def __init__(self, proj: nn.Linear):
        super().__init__()
        self.proj = proj


def _dora_reference(
    x: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor,
    m: torch.Tensor,
    scaling: float,
    *,
    x_d: torch.Tensor | None = None,
    norm_scaling: float | None = None,
    norm_dim: int = 1,
    norm_of_W: bool = False,
    detach: bool = True,
    bias: str = "add",
    dropout: str = "adapter",
    use_magnitude: bool = True,
) -> torch.Tensor:
    """Compute a DoRA output, correct by default, or with one of the known mistakes switched on.

    The correct formula is PEFT's: y = base(x) + (m/n - 1)·(x_d Wᵀ) + (m/n)·s·(x_d Aᵀ Bᵀ), n = ||W + s·B·A|| per row
    (detached, DoRA §4.3), with x_d = dropout(x) on the adapter path only.

    Args:
        x: (..., in_features); W: (out, in); b: (out,) or None; A: (r, in); B: (out, r); m: (out, 1).
        x_d: the dropped-out x (None: no dropout).
        norm_scaling: scaling used inside the norm (None: same as `scaling`).
        norm_dim, norm_of_W, detach: how the norm is computed.
        bias: "add", "lost", "scaled" (bias multiplied by m/n) or "twice".
        dropout: "adapter" (PEFT), "everywhere" (also on the frozen path) or "lora_only" (not on the W term).
        use_magnitude: False to use the unit direction alone.
    Returns:
        (..., out_features).
    """
    x_d = x if x_d is None else x_d
    s_norm = scaling if norm_scaling is None else norm_scaling
    V = W if norm_of_W else W + s_norm * (B @ A)
    norm = torch.linalg.vector_norm(V, dim=norm_dim, keepdim=True)
    if detach:
        norm = norm.detach()
    factor = m / norm if use_magnitude else 1 / norm  # (out, 1), or (out, in) for the dim=0 mistake
    if factor.shape[1] == 1:
        factor = factor.T  # scales output features: (1, out)
        adapter = factor * scaling * (x_d @ A.T @ B.T)
        if dropout == "everywhere":
            y = factor * (x_d @ W.T) + adapter
        else:
            x_w = x if dropout == "lora_only" else x_d
            y = x @ W.T + (factor - 1) * (x_w @ W.T) + adapter
    else:
        # A per-element factor (norm over dim=0) cannot be factored out of x: use the merged weight.
        y = x_d @ (factor * (W + scaling * (B @ A))).T
        factor = None
    if b is not None:
        if bias == "add":
            y = y + b
        elif bias == "twice":
            y = y + 2 * b
        elif bias == "scaled" and factor is not None:
            y = y + factor * b
    return y


def _reference_grads(
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    g: torch.Tensor,
    x_d: torch.Tensor | None,
    scaling: float,
    detach: bool,
) -> dict[str, torch.Tensor]:
    """Return autograd's gradients of sum(y * g) w.r.t. lora_A, lora_B and magnitude for _dora_reference."""
    leaves = {name: params[name].detach().clone().requires_grad_(True) for name in ("lora_A", "lora_B", "magnitude")}
    y = _dora_reference(
        x,
        params["weight"],
        params["bias"],
        leaves["lora_A"],
        leaves["lora_B"],
        leaves["magnitude"],
        scaling,
        x_d=x_d,
        detach=detach,
    )
    grads = torch.autograd.grad((y * g).sum(), list(leaves.values()))
    return dict(zip(leaves, grads))


def _get(layer: nn.Module, name: str, how: str) -> Any:
    """Return layer.name, or fail saying which attribute DoRALinear must define."""
    if not hasattr(layer, name):
        raise AssertionError(f"DoRALinear has no attribute `{name}`: in __init__, set {how}.")
    return getattr(layer, name)


def _check_structure(
    layer: Any,
    base: nn.Linear,
    W0: torch.Tensor,
    b0: torch.Tensor | None,
    r: int,
    lora_alpha: float,
    p: float,
    what: str,
) -> None:
    """Check attributes, shapes, dtypes, requires_grad flags and the trainable-parameter count of a fresh layer."""
    out_features, in_features = W0.shape
    if layer is None or not isinstance(layer, nn.Module):
        raise AssertionError(
            f"{what} gave {type(layer).__name__}, not an nn.Module: DoRALinear must subclass nn.Module and call super().__init__()."
        )
    dtype = W0.dtype
    if not torch.equal(base.weight.detach(), W0) or (b0 is not None and not torch.equal(base.bias.detach(), b0)):
        raise AssertionError(
            f"{what} changed base_layer's weight or bias in place: keep the pretrained layer unchanged "
            f"(no in-place ops such as .div_() or .data assignments on it; compute new tensors instead)."
        )
    weight = _get(
        layer,
        "weight",
        "self.weight = the frozen base weight (nn.Parameter(base_layer.weight.detach(), requires_grad=False))",
    )
    expect_tensor(weight, "DoRALinear.weight", shape=(out_features, in_features))
    if not torch.equal(weight.detach(), W0):
        raise AssertionError(
            f"DoRALinear.weight should hold base_layer.weight unchanged; {what} stores different values."
        )
    if weight.requires_grad:
        raise AssertionError(
            "the base weight is trainable (DoRALinear.weight.requires_grad is True): freeze it with requires_grad=False; "
            "DoRA trains only magnitude, lora_A and lora_B."
        )
    bias = _get(layer, "bias", "self.bias = the frozen base bias, or None when base_layer has none")
    if b0 is not None:
        if bias is None:
            raise AssertionError(
                "the base bias is lost: base_layer has a bias but DoRALinear.bias is None; keep it "
                "(self.bias = nn.Parameter(base_layer.bias.detach(), requires_grad=False)) and add it to the output."
            )
        expect_tensor(bias, "DoRALinear.bias", shape=(out_features,))
        if not torch.equal(bias.detach(), b0):
            raise AssertionError("DoRALinear.bias should hold base_layer.bias unchanged.")
        if bias.requires_grad:
            raise AssertionError(
                "the base bias is trainable (DoRALinear.bias.requires_grad is True): freeze it with requires_grad=False."
            )
    elif bias is not None and not (isinstance(bias, torch.Tensor) and not bool(bias.any()) and not bias.requires_grad):
        raise AssertionError("base_layer has no bias (bias=False), so DoRALinear.bias should be None.")

    magnitude = _get(
        layer, "magnitude", "self.magnitude = nn.Parameter(row norms of the weight), shape (out_features, 1)"
    )
    _check_magnitude_shape(magnitude, W0, "DoRALinear.magnitude")
    lora_A = _get(layer, "lora_A", "self.lora_A = nn.Parameter of shape (r, in_features)")
    lora_B = _get(layer, "lora_B", "self.lora_B = nn.Parameter of shape (out_features, r), zeros")
    for name, value, shape in (("lora_A", lora_A, (r, in_features)), ("lora_B", lora_B, (out_features, r))):
        if isinstance(value, nn.Linear):
            raise AssertionError(
                f"DoRALinear.{name} is an nn.Linear: store its matrix directly as nn.Parameter of shape {shape}, as the lab asks."
            )
        if isinstance(value, torch.Tensor) and tuple(value.shape) != shape and tuple(value.shape) == shape[::-1]:
            raise AssertionError(
                f"DoRALinear.{name} has shape {tuple(value.shape)}, expected {shape}: PEFT's lora_A is (r, in_features) "
                f"and lora_B is (out_features, r), so that B @ A has the weight's shape (out_features, in_features)."
            )
        expect_tensor(value, f"DoRALinear.{name}", shape=shape)
    for name, value in (("magnitude", magnitude), ("lora_A", lora_A), ("lora_B", lora_B)):
        if value.dtype != dtype or value.device != W0.device:
            raise AssertionError(
                f"DoRALinear.{name} has dtype {value.dtype} on {value.device}, but the base layer is {dtype} on {W0.device}: "
                f"create it with dtype=base_layer.weight.dtype, device=base_layer.weight.device."
            )
        if not isinstance(value, nn.Parameter) or not value.requires_grad:
            kind = (
                "a plain tensor (or buffer)"
                if not isinstance(value, nn.Parameter)
                else "an nn.Parameter with requires_grad=False"
            )
            raise AssertionError(
                f"{name} is not trainable: DoRALinear.{name} is {kind}. Make it nn.Parameter(...) (trainable), "
                f"since DoRA trains magnitude, lora_A and lora_B."
            )

    scaling = _get(layer, "scaling", "self.scaling = lora_alpha / r")
    expected_scaling = lora_alpha / r
    try:
        scaling = float(scaling)
    except (TypeError, ValueError):
        raise AssertionError(
            f"DoRALinear.scaling should be the number lora_alpha / r, got {type(scaling).__name__}."
        ) from None
    if abs(scaling - expected_scaling) > 1e-12 * max(1.0, abs(expected_scaling)):
        wrong = {
            float(lora_alpha): "lora_alpha alone",
            r / lora_alpha: "r / lora_alpha",
            1.0: "no scaling at all",
            float(r): "r alone",
        }
        guess = next((name for value, name in wrong.items() if abs(scaling - value) < 1e-12), None)
        raise AssertionError(
            f"DoRALinear.scaling is {scaling:g}"
            + (f", which is {guess}" if guess else "")
            + f", expected lora_alpha / r = {lora_alpha:g} / {r} = {expected_scaling:g}, as in PEFT."
        )
    for name, expected in (("r", r), ("in_features", in_features), ("out_features", out_features)):
        value = _get(layer, name, f"self.{name}")
        if value != expected:
            raise AssertionError(f"DoRALinear.{name} is {value!r}, expected {expected}.")
    dropout = _get(
        layer, "lora_dropout", "self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()"
    )
    if not callable(dropout):
        raise AssertionError(
            f"DoRALinear.lora_dropout should be a module (nn.Dropout(p) or nn.Identity()), got {type(dropout).__name__}."
        )
    if isinstance(dropout, nn.Dropout) and abs(dropout.p - p) > 1e-12:
        raise AssertionError(f"DoRALinear.lora_dropout has p={dropout.p}, expected lora_dropout={p}.")
    if p > 0 and isinstance(dropout, nn.Identity):
        raise AssertionError(
            f"DoRALinear.lora_dropout is nn.Identity but lora_dropout={p}: use nn.Dropout(lora_dropout)."
        )

    trainable = {name: param for name, param in layer.named_parameters() if param.requires_grad}
    count = sum(param.numel() for param in trainable.values())
    expected_count = r * (in_features + out_features) + out_features
    if count != expected_count:
        listing = ", ".join(f"{name} {tuple(param.shape)}" for name, param in trainable.items())
        raise AssertionError(
            f"DoRALinear has {count} trainable parameters, expected r*(in+out)+out = {expected_count}: "
            f"only magnitude, lora_A and lora_B should be trainable, but the trainable ones are: {listing}. "
            f"Freeze the rest (e.g. a stored base_layer: base_layer.requires_grad_(False))."
        )


def _check_initial_state(
    layer: nn.Module,
    base_forward: Callable,
    W0: torch.Tensor,
    b0: torch.Tensor | None,
    x: torch.Tensor,
    seed: int,
    r: int,
    lora_alpha: float,
    p: float,
    what: str,
) -> None:
    """Check PEFT's init (lora_B zero, lora_A random, magnitude = row norms) and that the layer starts equal to its base."""
    norms = _row_norms(W0)
    A, B, m = layer.lora_A.detach(), layer.lora_B.detach(), layer.magnitude.detach()
    if bool(B.any()):
        if not bool(A.any()):
            raise AssertionError(
                "the inits of lora_A and lora_B are swapped: lora_B should start at zero and lora_A random "
                "(PEFT: Kaiming-uniform A, zero B), so the layer starts equal to its base layer and both get gradients."
            )
        raise AssertionError(
            "lora_B is not zero at the start: initialise it with zeros (nn.init.zeros_ / torch.zeros), as PEFT does, "
            "so that B @ A = 0 and the layer starts exactly equal to its base layer."
        )
    if not bool(A.any()):
        raise AssertionError(
            "lora_A is all zeros at the start: with lora_B also zero neither gets a gradient and the adapter never trains; "
            "initialise lora_A randomly, e.g. nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5)) as PEFT does."
        )
    if not _is_close(m, norms):
        if _is_close(m, torch.ones_like(m)):
            hint = "magnitude starts at ones: initialise it to the row norms of the base weight, torch.linalg.vector_norm(W, dim=1, keepdim=True)."
        elif _is_close(m, norms**2):
            hint = "magnitude starts at the squared row norms: take the L2 norm (square root of the sum of squares)."
        else:
            hint = "initialise magnitude to the row norms of the base weight (decompose_weight's magnitude)."
        assert_close(
            m,
            norms,
            "DoRALinear.magnitude at initialisation",
            hint=hint + " Then the layer starts equal to its base layer.",
        )
    expected = base_forward(x)
    for training in (False, True):
        layer.train(training)
        _seed(seed)
        with torch.no_grad():
            y = call_student(layer, x, what=f"the forward of {what} ({'train' if training else 'eval'} mode)")
        expect_tensor(
            y,
            f"the output of {what}",
            shape=tuple(expected.shape),
            hint="forward should `return` a tensor of shape (..., out_features).",
        )
        if training and p > 0:
            hint = (
                "In train mode with lora_B = 0 and magnitude = ||W||, the output should equal base_layer(x) exactly, but it differs: "
                "dropout is applied to the frozen base path too. Apply lora_dropout on the adapter path only, "
                "as PEFT: y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x)."
            )
        else:
            params = {"weight": W0, "bias": b0, "lora_A": A, "lora_B": B, "magnitude": m}
            hint = _first_match(y, _output_mistakes(params, x, None, lora_alpha / r, r, lora_alpha)) or (
                "A fresh DoRALinear (lora_B = 0, magnitude = row norms of W) should compute exactly base_layer(x)."
            )
        assert_close(
            y,
            expected,
            f"the output of a fresh {what} vs base_layer(x) ({'train' if training else 'eval'} mode)",
            hint=hint,
        )


def _set_random_state(
    layer: nn.Module, W0: torch.Tensor, r: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Give lora_A, lora_B and magnitude random non-zero values (so every term of DoRA matters) and return them."""
    out_features, in_features = W0.shape
    dtype = W0.dtype
    values = {
        "lora_A": _randn((r, in_features), generator, dtype) / in_features**0.5,
        "lora_B": 0.3 * _randn((out_features, r), generator, dtype),
        "magnitude": _row_norms(W0)
        * (1 + 0.3 * torch.rand((out_features, 1), generator=generator, dtype=torch.float64).to(dtype)),
    }
    with torch.no_grad():
        for name, value in values.items():
            getattr(layer, name).copy_(value)
    return values


def _output_mistakes(
    params: dict, x: torch.Tensor, x_d: torch.Tensor | None, scaling: float, r: int, lora_alpha: float
) -> list:
    """Return (message, reference) for the known mistakes of DoRALinear's forward."""
    W, b, A, B, m = params["weight"], params["bias"], params["lora_A"], params["lora_B"], params["magnitude"]

    def ref(**kwargs: Any) -> Callable[[], torch.Tensor]:
        kwargs.setdefault("x_d", x_d)
        s = kwargs.pop("scaling", scaling)
        return lambda: _dora_reference(x, W, b, A, B, m, s, **kwargs)

    expected_s = f"scaling = lora_alpha / r = {lora_alpha:g} / {r} = {scaling:g}"
    mistakes = [
        (
            f"the LoRA update is not scaled: multiply B @ A by {expected_s} (in the output and in the norm).",
            ref(scaling=1.0),
        ),
        (f"the LoRA update is scaled by lora_alpha alone: use {expected_s}.", ref(scaling=float(lora_alpha))),
        (f"the LoRA update is scaled by r / lora_alpha: use {expected_s}.", ref(scaling=r / lora_alpha)),
        (
            "the norm uses a different scaling than the output: the norm is of V = W + scaling·B·A with the same scaling.",
            ref(norm_scaling=1.0),
        ),
        (
            "the norm in forward is taken over dim=0 (one per input feature): "
            + AXIS_EXPLANATION
            + " Use ||V|| over dim=1.",
            ref(norm_dim=0),
        ),
        (
            "the norm is of the frozen W alone: DoRA divides by the norm of the adapted weight V = W + scaling·B·A, recomputed in every forward.",
            ref(norm_of_W=True),
        ),
        ("the output ignores magnitude: DoRA's weight is magnitude * V / ||V||.", ref(use_magnitude=False)),
        ("the bias of base_layer is missing from the output: add self.bias (frozen) to the result.", ref(bias="lost")),
        ("the bias is multiplied by magnitude / ||V||: add it unscaled, y = x W'ᵀ + b.", ref(bias="scaled")),
        ("the bias is added twice: add self.bias once.", ref(bias="twice")),
    ]
    if x_d is not None:
        mistakes += [
            (
                "dropout is applied to the frozen base path too: apply lora_dropout on the adapter path only, as PEFT: "
                "y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x).",
                ref(dropout="everywhere"),
            ),
            (
                "in train mode no dropout is applied: compute x_d = self.lora_dropout(x) and use it on the adapter path.",
                ref(x_d=None),
            ),
            (
                "the (m/||V|| - 1)·x Wᵀ correction uses the clean x: like PEFT, use the dropped-out x_d in both adapter terms, "
                "y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ).",
                ref(dropout="lora_only"),
            ),
        ]
    return mistakes


def _compare_with_peft(
    layer: nn.Module,
    peft_layer: nn.Module,
    params: dict,
    x: torch.Tensor,
    seed: int,
    training: bool,
    scaling: float,
    r: int,
    lora_alpha: float,
    p: float,
    what: str,
    generator: torch.Generator,
) -> None:
    """Compare the output and the gradients of lora_A, lora_B and magnitude with PEFT's, with identical dropout masks."""
    mode = f"train mode, lora_dropout={p:g}" if training else "eval mode"
    layer.train(training)
    peft_layer.train(training)
    for module in (layer, peft_layer):
        for param in module.parameters():
            param.grad = None
    # Re-seed before each forward: both draw the same dropout mask (PEFT calls dropout(x) once, after the base layer).
    _seed(seed)
    y = call_student(layer, x, what=f"the forward of {what} ({mode}) on x of shape {tuple(x.shape)}")
    _seed(seed)
    y_ref = peft_layer(x)
    _seed(seed)
    x_d = torch.nn.functional.dropout(x, p) if training and p > 0 else None
    where = f"{what} ({mode}, x of shape {tuple(x.shape)})"
    expect_tensor(
        y,
        f"the output of {where}",
        shape=tuple(y_ref.shape),
        hint="forward should `return` a tensor of shape (..., out_features).",
    )
    if not _is_close(y, y_ref):
        hint = _first_match(y, _output_mistakes(params, x, x_d, scaling, r, lora_alpha))
        if hint is None:
            hint = "Expected PEFT's DoRA: y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·scaling·(x_d Aᵀ Bᵀ), ||V|| = row norms of W + scaling·B·A."
            if training:
                hint += " Call self.lora_dropout once and use the same x_d in both adapter terms."
        assert_close(y, y_ref, f"the output of {where} vs PEFT's DoRA", hint=hint)
    g = _randn(y_ref.shape, generator, y_ref.dtype)
    if not y.requires_grad:
        raise AssertionError(
            f"the output of {where} does not require grad: don't use torch.no_grad(), .detach() or .data on magnitude, lora_A or lora_B in forward."
        )
    call_student(lambda: (y * g).sum().backward(), what=f"backpropagating through the output of {where}")
    (y_ref * g).sum().backward()
    peft_grads = {
        "lora_A": peft_layer.lora_A["default"].weight.grad,
        "lora_B": peft_layer.lora_B["default"].weight.grad,
        "magnitude": peft_layer.lora_magnitude_vector["default"].weight.grad.view(-1, 1),
    }
    not_detached = None
    for name, expected in peft_grads.items():
        grad = getattr(layer, name).grad
        if grad is None:
            raise AssertionError(
                f"{name} gets no gradient from {where}: use self.{name} itself in forward "
                f"(not a copy, .data or .detach()), so that it trains."
            )
        if _is_close(grad, expected):
            continue
        if not_detached is None:
            not_detached = _reference_grads(params, x, g, x_d, scaling, detach=False)
        if name != "magnitude" and _is_close(grad, not_detached[name]):
            hint = (
                "the gradient matches DoRA WITHOUT a detached norm: detach ||W + scaling·B·A|| in forward "
                "(norm.detach()), as the paper (§4.3) and PEFT do; it stays in the forward pass but gets no gradient."
            )
        else:
            hint = "the output matches PEFT but this gradient does not: check for .detach()/.data on trainable parameters in forward."
        assert_close(grad, expected, f"the gradient of {name} for {where} vs PEFT's DoRA", hint=hint)


@_one_thread()
def check_dora_linear(
    DoRALinear: Callable,
    shapes: Sequence[Sequence[int]] = ((6, 10), (9, 4)),
    seeds: Sequence[int] = (0, 1),
    r: int = 4,
    lora_alpha: float = 6.0,
    lora_dropout: float = 0.25,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 8,
) -> None:
    """Check DoRALinear against PEFT's DoRA (LoraConfig(use_dora=True)): structure, init, outputs and gradients.

    For each weight shape and seed, and for base layers with and without bias (and once without dropout), wrap a
    fresh nn.Linear with the student's layer and with PEFT, give both the same random lora_A, lora_B and magnitude,
    and compare outputs and gradients in eval mode and in train mode (same dropout masks), on 2-D and 3-D inputs.

    Args:
        DoRALinear: the student's class; DoRALinear(base_layer, r=..., lora_alpha=..., lora_dropout=...).
        shapes: base weight shapes (out_features, in_features).
        seeds: random seeds of the base layer, the adapter values and the inputs.
        r, lora_alpha, lora_dropout: the adapter's settings (lora_dropout > 0 for the train-mode checks).
        dtype: dtype of the base layer and inputs.
        batch_size: rows of the 2-D input; the 3-D input is (2, 3, in_features).
    """
    # Leave the notebook's random state as it was: the check seeds the CPU generator for every layer and forward.
    with torch.random.fork_rng(devices=[]):
        n_cases = _check_dora_linear_cases(DoRALinear, shapes, seeds, r, lora_alpha, lora_dropout, dtype, batch_size)
    passed(
        "DoRALinear",
        f"{n_cases} layers on shapes {_shapes_text(shapes)} (with/without bias, {_dtype_name(dtype)}, r={r}) match PEFT's DoRA: "
        f"outputs and gradients in eval and train mode, frozen base, zero-init lora_B, {r}*(in+out)+out trainable parameters",
    )


def _check_dora_linear_cases(
    DoRALinear: Callable,
    shapes: Sequence[Sequence[int]],
    seeds: Sequence[int],
    r: int,
    lora_alpha: float,
    lora_dropout: float,
    dtype: torch.dtype,
    batch_size: int,
) -> int:
    """Run check_dora_linear's cases and return how many layers passed."""
    # Imported here: importing PEFT takes seconds, and the notebook's setup cell imports every check.
    from peft import LoraConfig, inject_adapter_in_model

    scaling = lora_alpha / r
    n_cases = 0
    for shape, seed in product(shapes, seeds):
        out_features, in_features = shape
        for bias, p in ((True, lora_dropout), (False, lora_dropout), (True, 0.0)):
            generator = torch.Generator().manual_seed(seed)
            _seed(seed)
            base = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
            W0 = base.weight.detach().clone()
            b0 = None if base.bias is None else base.bias.detach().clone()
            reference_base = copy.deepcopy(base)
            what = f"DoRALinear(nn.Linear({in_features}, {out_features}, bias={bias}), r={r}, lora_alpha={lora_alpha:g}, lora_dropout={p:g})"
            layer = call_student(DoRALinear, base, r=r, lora_alpha=lora_alpha, lora_dropout=p, what=what)
            _check_structure(layer, base, W0, b0, r, lora_alpha, p, what)
            inputs = [
                _randn((batch_size, in_features), generator, dtype),
                _randn((2, 3, in_features), generator, dtype),
            ]
            with torch.no_grad():
                _check_initial_state(layer, reference_base, W0, b0, inputs[0], seed, r, lora_alpha, p, what)

            params = _set_random_state(layer, W0, r, generator)
            params.update(weight=W0, bias=b0)
            config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=p, target_modules=["proj"], use_dora=True)
            peft_layer = inject_adapter_in_model(config, _Holder(copy.deepcopy(reference_base))).proj.to(dtype)
            with torch.no_grad():
                peft_layer.lora_A["default"].weight.copy_(params["lora_A"])
                peft_layer.lora_B["default"].weight.copy_(params["lora_B"])
                # PEFT stores the magnitude 1-D, (out_features,); the lab keeps (out_features, 1).
                peft_layer.lora_magnitude_vector["default"].weight.copy_(params["magnitude"].view(-1))
            for x, training in product(inputs, (False, True)):
                _compare_with_peft(
                    layer, peft_layer, params, x, seed, training, scaling, r, lora_alpha, p, what, generator
                )
            if not torch.equal(base.weight.detach(), W0) or not torch.equal(layer.weight.detach(), W0):
                raise AssertionError(
                    f"{what} changed the pretrained weight in place: keep base_layer.weight unchanged "
                    f"(no in-place ops or .data assignments on it; compute the adapted weight as a new tensor)."
                )
            n_cases += 1
    return n_cases


# --------------------------------------------------------------------------------------------------
# Exercise 3: dora_direction_gradient
# --------------------------------------------------------------------------------------------------


def _autograd_direction_gradient(
    G: torch.Tensor, V: torch.Tensor, m: torch.Tensor, detach_norm: bool, norm_dim: int = 1
) -> torch.Tensor:
    """Return dL/dV by autograd for W' = m * V / ||V|| (norm over rows, optionally detached) and dL/dW' = G."""
    V = V.detach().clone().requires_grad_(True)
    norm = torch.linalg.vector_norm(V, dim=norm_dim, keepdim=True)
    W_prime = m * V / (norm.detach() if detach_norm else norm)
    (grad,) = torch.autograd.grad((W_prime * G).sum(), V)
    return grad


@_one_thread()
def check_dora_direction_gradient(
    dora_direction_gradient: Callable,
    shapes: Sequence[Sequence[int]] = ((6, 9), (10, 4)),
    seeds: Sequence[int] = (0, 1),
    dtype: torch.dtype = torch.float64,
) -> None:
    """Check dora_direction_gradient(grad_weight, weight, magnitude, detach_norm) against autograd.

    Args:
        dora_direction_gradient: the student's function; grad_weight, weight: (out_features, in_features),
            magnitude: (out_features, 1) -> dL/dV (out_features, in_features).
        shapes: weight shapes (out_features, in_features).
        seeds: random seeds of V, magnitude and dL/dW'.
        dtype: dtype of the inputs.
    """
    n_checks = 0
    for shape, seed in product(shapes, seeds):
        out_features, _ = shape
        generator = torch.Generator().manual_seed(seed)
        V = _randn(shape, generator, dtype)
        m = (0.5 + torch.rand((out_features, 1), generator=generator, dtype=torch.float64)).to(dtype)
        G = _randn(shape, generator, dtype)
        for detach_norm in (True, False):
            what = f"dora_direction_gradient(grad_weight, weight, magnitude, detach_norm={detach_norm}) with weight of shape {tuple(shape)}, {_dtype_name(dtype)}"
            inputs = (G.clone(), V.clone(), m.clone())
            result = call_student(dora_direction_gradient, *inputs, detach_norm=detach_norm, what=what)
            for name, before, after in zip(("grad_weight", "weight", "magnitude"), (G, V, m), inputs):
                if not torch.equal(before, after):
                    raise AssertionError(
                        f"{what} modified its argument {name} in place: compute new tensors instead (no *=, -=, .mul_())."
                    )
            expect_tensor(
                result,
                f"the result of {what}",
                shape=tuple(shape),
                dtype=dtype,
                hint="Return dL/dV, same shape as weight.",
            )
            expected = _autograd_direction_gradient(G, V, m, detach_norm)
            if _is_close(result, expected):
                n_checks += 1
                continue
            Vd, Gd, md = V.double(), G.double(), m.double()
            norm = _row_norms(Vd)
            V_hat = Vd / norm

            def projected(
                direction: torch.Tensor, dim: int = 1, sign: float = -1.0, factor: torch.Tensor = md / norm
            ) -> Callable[[], torch.Tensor]:
                return lambda: factor * (Gd + sign * (direction * Gd).sum(dim=dim, keepdim=True) * direction)

            mistakes = [
                (
                    "with detach_norm=False the norm also gets a gradient: subtract the component along the direction, "
                    "(m/||V||)·(g - (V̂·g) V̂) row-wise with V̂ = V/||V||.",
                    lambda: md / norm * Gd,
                ),
                (
                    "with detach_norm=True the norm is a constant: dL/dV = (m/||V||)·g, with no projection.",
                    projected(V_hat),
                ),
                (
                    "the projection is over columns: project each row, (V̂ * g).sum(dim=1, keepdim=True) with V̂ = V/||V|| over dim=1.",
                    projected(Vd / torch.linalg.vector_norm(Vd, dim=0, keepdim=True), dim=0),
                ),
                (
                    "||V|| is taken over dim=0: " + AXIS_EXPLANATION + " Use the row norms, dim=1.",
                    lambda: _autograd_direction_gradient(Gd, Vd, md, detach_norm, norm_dim=0),
                ),
                (
                    "the factor m/||V|| is missing: multiply the gradient by magnitude / ||V|| (row-wise).",
                    (lambda: Gd) if detach_norm else projected(V_hat, factor=torch.ones_like(norm)),
                ),
                ("the projection is added: subtract it, g - (V̂·g) V̂.", projected(V_hat, sign=1.0)),
                (
                    "the projection uses V instead of the unit direction V̂ = V/||V|| (or misses the 1/||V||² of V Vᵀ).",
                    projected(Vd),
                ),
                (
                    "the factor is inverted: multiply by magnitude / ||V||, not ||V|| / magnitude.",
                    projected(V_hat, factor=norm / md) if not detach_norm else (lambda: norm / md * Gd),
                ),
            ]
            hint = _first_match(result, mistakes) or (
                "expected autograd's dL/dV for W' = m·V/||V|| (row norms): (m/||V||)·g with detach_norm=True, "
                "(m/||V||)·(g - (V̂·g) V̂) with detach_norm=False."
            )
            assert_close(result, expected, f"the result of {what} vs autograd", hint=hint)
    passed(
        "dora_direction_gradient",
        f"{n_checks} checks on shapes {_shapes_text(shapes)} ({_dtype_name(dtype)}) match autograd with and without a detached norm",
    )
