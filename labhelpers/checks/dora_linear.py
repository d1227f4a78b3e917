"""Exercise 2's judge: DoRALinear against PEFT's DoRA (LoraConfig(use_dora=True)) — structure, init, outputs, gradients.

PEFT 0.21 is the oracle: the same base layer, the same lora_A, lora_B and magnitude, the same inputs and dropout
masks, in eval and in train mode. Its formula, which the mistakes below vary: with V = W + s·B·A and n = ‖V‖ per row
(detached: paper §4.3, Eq. 11), y = base(x) + (m/n − 1)·(x_d Wᵀ) + (m/n)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x) on the
adapter path only (the dropout form is PEFT's and the authors' code's, not the paper's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from labhelpers.checks.core import (
    SETTING_RTOL,
    CheckFailed,
    Mistake,
    assert_close,
    describe_facts,
    expect_tensor,
    explain,
    is_close,
    recognise,
    run_check,
    student_error,
    unchanged,
)
from labhelpers.checks.decompose import AXIS_EXPLANATION, judge_magnitude_shape
from labhelpers.probes.core import Observation, isolated, reseed
from labhelpers.probes.dora_linear import TRAINABLE, DoRALinearCase, DoRALinearSpec, cases, probe, row_norms

OUTPUT_HINT = "forward should `return` a tensor of shape (..., out_features)."


def dora_output(
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
    """Compute a DoRA output, PEFT's by default, or with known mistakes switched on (the judge's reference builder).

    Args:
        x: (..., in_features); W: (out, in); b: (out,) or None; A: (r, in); B: (out, r); m: (out, 1).
        x_d: the dropped-out x (None: no dropout).
        norm_scaling: scaling used inside the norm (None: the same as `scaling`).
        norm_dim, norm_of_W, detach: how the norm is computed.
        bias: "add", "lost", "scaled" (multiplied by m/n) or "twice".
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


def _attr(obs: Observation, case: DoRALinearCase, name: str, how: str) -> dict[str, Any]:
    facts = obs.facts.get(f"{case.key}/attr/{name}")
    if facts is None:
        raise CheckFailed(f"DoRALinear.{name} was not recorded: the check stopped before it.", missing=True)
    if facts.get("kind") == "missing":
        raise CheckFailed(f"DoRALinear has no attribute `{name}`: in __init__, set {how}.")
    return facts


def _judge_structure(obs: Observation, case: DoRALinearCase) -> None:
    """Attributes, shapes, dtypes, requires_grad flags and the trainable-parameter count of a fresh layer."""
    key, what, W0, b0 = case.key, case.what, case.W0, case.b0
    out_features, in_features = W0.shape
    layer = obs.facts.get(f"{key}/layer")
    if layer is None:
        raise CheckFailed(f"{what} was not built: the check stopped before it.", missing=True)
    if layer.get("kind") != "module":
        raise CheckFailed(
            f"{what} gave {describe_facts(layer)}, not an nn.Module: DoRALinear must subclass nn.Module and call "
            f"super().__init__()."
        )
    if not unchanged(obs, f"{key}/base_after/weight", W0) or (
        b0 is not None and not unchanged(obs, f"{key}/base_after/bias", b0)
    ):
        raise CheckFailed(
            f"{what} changed base_layer's weight or bias in place: keep the pretrained layer unchanged (no in-place "
            f"ops such as .div_() or .data assignments on it; compute new tensors instead)."
        )
    _attr(
        obs,
        case,
        "weight",
        "self.weight = the frozen base weight (nn.Parameter(base_layer.weight.detach(), requires_grad=False))",
    )
    weight = expect_tensor(obs, f"{key}/attr/weight", "DoRALinear.weight", shape=(out_features, in_features))
    if not torch.equal(weight, W0):
        raise CheckFailed(
            f"DoRALinear.weight should hold base_layer.weight unchanged; {what} stores different values."
        )
    if obs.facts[f"{key}/attr/weight"]["requires_grad"]:
        raise CheckFailed(
            "the base weight is trainable (DoRALinear.weight.requires_grad is True): freeze it with "
            "requires_grad=False; DoRA trains only magnitude, lora_A and lora_B."
        )
    bias_facts = _attr(obs, case, "bias", "self.bias = the frozen base bias, or None when base_layer has none")
    if b0 is not None:
        if bias_facts["kind"] == "none":
            raise CheckFailed(
                "the base bias is lost: base_layer has a bias but DoRALinear.bias is None; keep it (self.bias = "
                "nn.Parameter(base_layer.bias.detach(), requires_grad=False)) and add it to the output."
            )
        bias = expect_tensor(obs, f"{key}/attr/bias", "DoRALinear.bias", shape=(out_features,))
        if not torch.equal(bias, b0):
            raise CheckFailed("DoRALinear.bias should hold base_layer.bias unchanged.")
        if bias_facts["requires_grad"]:
            raise CheckFailed(
                "the base bias is trainable (DoRALinear.bias.requires_grad is True): freeze it with requires_grad=False."
            )
    elif bias_facts["kind"] != "none":
        stored = obs.tensors.get(f"{key}/attr/bias")
        if stored is None or bool(stored.any()) or bias_facts.get("requires_grad"):
            raise CheckFailed("base_layer has no bias (bias=False), so DoRALinear.bias should be None.")

    _attr(obs, case, "magnitude", "self.magnitude = nn.Parameter(row norms of the weight), shape (out_features, 1)")
    judge_magnitude_shape(obs, f"{key}/attr/magnitude", W0, "DoRALinear.magnitude")
    for name, shape in (("lora_A", (case.r, in_features)), ("lora_B", (out_features, case.r))):
        how = (
            "nn.Parameter of shape (r, in_features)"
            if name == "lora_A"
            else "nn.Parameter of shape (out_features, r), zeros"
        )
        facts = _attr(obs, case, name, f"self.{name} = {how}")
        if facts["kind"] == "module" and facts.get("type") == "Linear":
            raise CheckFailed(
                f"DoRALinear.{name} is an nn.Linear: store its matrix directly as nn.Parameter of shape {shape}, as the "
                f"lab asks."
            )
        if facts["kind"] in ("tensor", "parameter") and tuple(facts["shape"]) == shape[::-1] != shape:
            raise CheckFailed(
                f"DoRALinear.{name} has shape {tuple(facts['shape'])}, expected {shape}: PEFT's lora_A is (r, "
                f"in_features) and lora_B is (out_features, r), so that B @ A has the weight's shape (out_features, "
                f"in_features)."
            )
        expect_tensor(obs, f"{key}/attr/{name}", f"DoRALinear.{name}", shape=shape)
    dtype = str(W0.dtype).removeprefix("torch.")
    for name in ("magnitude", "lora_A", "lora_B"):
        facts = obs.facts[f"{key}/attr/{name}"]
        if facts["dtype"] != dtype or facts["device"] != str(W0.device):
            raise CheckFailed(
                f"DoRALinear.{name} has dtype torch.{facts['dtype']} on {facts['device']}, but the base layer is "
                f"torch.{dtype} on "
                f"{W0.device}: create it with dtype=base_layer.weight.dtype, device=base_layer.weight.device."
            )
        if facts["kind"] != "parameter" or not facts["requires_grad"]:
            kind = (
                "a plain tensor (or buffer)"
                if facts["kind"] != "parameter"
                else "an nn.Parameter with requires_grad=False"
            )
            raise CheckFailed(
                f"{name} is not trainable: DoRALinear.{name} is {kind}. Make it nn.Parameter(...) (trainable), since "
                f"DoRA trains magnitude, lora_A and lora_B."
            )

    facts = _attr(obs, case, "scaling", "self.scaling = lora_alpha / r")
    scaling = facts.get("value") if facts["kind"] == "number" else facts.get("as_number")
    if not isinstance(scaling, (int, float)):
        raise CheckFailed(f"DoRALinear.scaling should be the number lora_alpha / r, got {describe_facts(facts)}.")
    expected_scaling = case.lora_alpha / case.r
    if abs(scaling - expected_scaling) > SETTING_RTOL * max(1.0, abs(expected_scaling)):
        wrong = {
            float(case.lora_alpha): "lora_alpha alone",
            case.r / case.lora_alpha: "r / lora_alpha",
            1.0: "no scaling at all",
            float(case.r): "r alone",
        }
        guess = next((name for value, name in wrong.items() if abs(scaling - value) <= SETTING_RTOL * value), None)
        raise CheckFailed(
            f"DoRALinear.scaling is {scaling:g}"
            + (f", which is {guess}" if guess else "")
            + f", expected lora_alpha / r = {case.lora_alpha:g} / {case.r} = {expected_scaling:g}, as in PEFT."
        )
    for name, expected in (("r", case.r), ("in_features", in_features), ("out_features", out_features)):
        facts = _attr(obs, case, name, f"self.{name}")
        if facts["kind"] != "number" or facts.get("value") != expected:
            got = facts.get("value") if facts["kind"] == "number" else describe_facts(facts)
            raise CheckFailed(f"DoRALinear.{name} is {got}, expected {expected}.")
    facts = _attr(
        obs,
        case,
        "lora_dropout",
        "self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()",
    )
    if facts["kind"] != "module" and not facts.get("callable"):
        raise CheckFailed(
            f"DoRALinear.lora_dropout should be a module (nn.Dropout(p) or nn.Identity()), got {describe_facts(facts)}."
        )
    if facts.get("dropout_p") is not None and abs(facts["dropout_p"] - case.p) > SETTING_RTOL:
        raise CheckFailed(f"DoRALinear.lora_dropout has p={facts['dropout_p']}, expected lora_dropout={case.p}.")
    if case.p > 0 and facts.get("type") == "Identity":
        raise CheckFailed(
            f"DoRALinear.lora_dropout is nn.Identity but lora_dropout={case.p}: use nn.Dropout(lora_dropout)."
        )

    trainable = obs.facts.get(f"{key}/trainable") or []
    count = sum(int(torch.Size(shape).numel()) for _, shape in trainable)
    expected_count = case.r * (in_features + out_features) + out_features
    if count != expected_count:
        listing = ", ".join(f"{name} {tuple(shape)}" for name, shape in trainable)
        raise CheckFailed(
            f"DoRALinear has {count} trainable parameters, expected r*(in+out)+out = {expected_count}: only magnitude, "
            f"lora_A and lora_B should be trainable, but the trainable ones are: {listing}. Freeze the rest (e.g. a "
            f"stored base_layer: base_layer.requires_grad_(False))."
        )


def _output_mistakes(case: DoRALinearCase, x_d: torch.Tensor | None) -> list[Mistake]:
    """Return the known mistakes of DoRALinear's forward, as changes to `dora_output`'s arguments."""
    r, alpha = case.r, case.lora_alpha
    scaling = alpha / r
    expected_s = f"scaling = lora_alpha / r = {alpha:g} / {r} = {scaling:g}"
    mistakes = [
        Mistake(
            f"the LoRA update is not scaled: multiply B @ A by {expected_s} (in the output and in the norm).",
            {"scaling": 1.0},
        ),
        Mistake(f"the LoRA update is scaled by lora_alpha alone: use {expected_s}.", {"scaling": float(alpha)}),
        Mistake(f"the LoRA update is scaled by r / lora_alpha: use {expected_s}.", {"scaling": r / alpha}),
        Mistake(
            "the norm uses a different scaling than the output: the norm is of V = W + scaling·B·A with the same "
            "scaling.",
            {"norm_scaling": 1.0},
        ),
        Mistake(
            "the norm in forward is taken over dim=0 (one per input feature): "
            + AXIS_EXPLANATION
            + " Use ||V|| over dim=1.",
            {"norm_dim": 0},
        ),
        Mistake(
            "the norm is of the frozen W alone: DoRA divides by the norm of the adapted weight V = W + scaling·B·A, "
            "recomputed in every forward.",
            {"norm_of_W": True},
        ),
        Mistake("the output ignores magnitude: DoRA's weight is magnitude * V / ||V||.", {"use_magnitude": False}),
        Mistake(
            "the bias of base_layer is missing from the output: add self.bias (frozen) to the result.",
            {"bias": "lost"},
        ),
        Mistake("the bias is multiplied by magnitude / ||V||: add it unscaled, y = x W'ᵀ + b.", {"bias": "scaled"}),
        Mistake("the bias is added twice: add self.bias once.", {"bias": "twice"}),
    ]
    if x_d is not None:
        formula = "y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x)"
        mistakes += [
            Mistake(
                f"dropout is applied to the frozen base path too: apply lora_dropout on the adapter path only, as PEFT: "
                f"{formula}.",
                {"dropout": "everywhere"},
            ),
            Mistake(
                "in train mode no dropout is applied: compute x_d = self.lora_dropout(x) and use it on the adapter path.",
                {"x_d": None},
            ),
            Mistake(
                f"the (m/||V|| - 1)·x Wᵀ correction uses the clean x: like PEFT, use the dropped-out x_d in both "
                f"adapter terms, {formula}.",
                {"dropout": "lora_only"},
            ),
        ]
    return mistakes


def _builder(
    case: DoRALinearCase, x: torch.Tensor, x_d: torch.Tensor | None, params: dict
) -> Callable[..., torch.Tensor]:
    """Return build(**changes): DoRA's output on x with these changes (the reference builder of the mistakes)."""
    W, b, A, B, m = case.W0, case.b0, params["lora_A"], params["lora_B"], params["magnitude"]

    def build(**changes: Any) -> torch.Tensor:
        changes.setdefault("x_d", x_d)
        scaling = changes.pop("scaling", case.lora_alpha / case.r)
        return dora_output(x, W, b, A, B, m, scaling, **changes)

    return build


def _judge_initial_state(obs: Observation, case: DoRALinearCase) -> None:
    """PEFT's init (lora_B zero, lora_A random, magnitude = row norms), and a fresh layer computes base_layer(x)."""
    key, what = case.key, case.what
    A, B, m = (obs.tensors[f"{key}/attr/{name}"] for name in ("lora_A", "lora_B", "magnitude"))
    norms = row_norms(case.W0)
    if bool(B.any()):
        if not bool(A.any()):
            raise CheckFailed(
                "the inits of lora_A and lora_B are swapped: lora_B should start at zero and lora_A random (PEFT: "
                "Kaiming-uniform A, zero B), so the layer starts equal to its base layer and both get gradients."
            )
        raise CheckFailed(
            "lora_B is not zero at the start: initialise it with zeros (nn.init.zeros_ / torch.zeros), as PEFT does, "
            "so that B @ A = 0 and the layer starts exactly equal to its base layer."
        )
    if not bool(A.any()):
        raise CheckFailed(
            "lora_A is all zeros at the start: with lora_B also zero neither gets a gradient and the adapter never "
            "trains; initialise lora_A randomly, e.g. nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5)) as PEFT does."
        )
    if not is_close(m, norms):
        if is_close(m, torch.ones_like(m)):
            hint = "magnitude starts at ones: initialise it to the row norms of the base weight, torch.linalg.vector_norm(W, dim=1, keepdim=True)."
        elif is_close(m, norms**2):
            hint = "magnitude starts at the squared row norms: take the L2 norm (square root of the sum of squares)."
        else:
            hint = "initialise magnitude to the row norms of the base weight (decompose_weight's magnitude)."
        assert_close(
            m,
            norms,
            "DoRALinear.magnitude at initialisation",
            hint=hint + " Then the layer starts equal to its base layer.",
        )
    x = case.inputs[0]
    expected = torch.nn.functional.linear(x, case.W0, case.b0)
    for mode in ("eval", "train"):
        y = expect_tensor(
            obs,
            f"{key}/init/{mode}",
            f"the output of {what} ({mode} mode)",
            shape=tuple(expected.shape),
            hint=OUTPUT_HINT,
        )
        if mode == "train" and case.p > 0:
            hint = (
                "In train mode with lora_B = 0 and magnitude = ||W||, the output should equal base_layer(x) exactly, "
                "but it differs: dropout is applied to the frozen base path too. Apply lora_dropout on the adapter path "
                "only, as PEFT: y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·s·(x_d Aᵀ Bᵀ), x_d = lora_dropout(x)."
            )
        else:
            params = {"lora_A": A, "lora_B": B, "magnitude": m}
            hint = explain(recognise(y, _output_mistakes(case, None), _builder(case, x, None, params))) or (
                "A fresh DoRALinear (lora_B = 0, magnitude = row norms of W) should compute exactly base_layer(x)."
            )
        assert_close(y, expected, f"the output of a fresh {what} vs base_layer(x) ({mode} mode)", hint=hint)


def _peft_runs(case: DoRALinearCase) -> list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]]:
    """Run PEFT's DoRA on the case: (output, gradients, x_d) per run, with the same dropout masks as the probe."""
    from labhelpers.models import peft_layer

    layer = peft_layer(case.base_layer(), use_dora=True, r=case.r, lora_alpha=case.lora_alpha, lora_dropout=case.p)
    layer = layer.to(case.W0.dtype)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(case.params["lora_A"])
        layer.lora_B["default"].weight.copy_(case.params["lora_B"])
        # PEFT stores the magnitude 1-D, (out_features,); the lab keeps (out_features, 1).
        layer.lora_magnitude_vector["default"].weight.copy_(case.params["magnitude"].view(-1))
    runs = []
    for (index, training, _), g in zip(case.runs(), case.grad_outputs, strict=True):
        x = case.inputs[index]
        layer.train(training)
        layer.zero_grad(set_to_none=True)
        reseed(case.seed)  # PEFT calls dropout(x) once, after the base layer: the student's layer draws the same mask
        y = layer(x)
        (y * g).sum().backward()
        grads = {
            "lora_A": layer.lora_A["default"].weight.grad.detach().clone(),
            "lora_B": layer.lora_B["default"].weight.grad.detach().clone(),
            "magnitude": layer.lora_magnitude_vector["default"].weight.grad.detach().view(-1, 1).clone(),
        }
        reseed(case.seed)
        x_d = torch.nn.functional.dropout(x, case.p) if training and case.p > 0 else None
        runs.append((y.detach(), grads, x_d))
    return runs


def _not_detached_grads(
    case: DoRALinearCase, x: torch.Tensor, g: torch.Tensor, x_d: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Autograd's gradients of DoRA WITHOUT the detached norm (paper §4.2, Eq. 6): what a missing .detach() gives."""
    leaves = {name: case.params[name].detach().clone().requires_grad_(True) for name in TRAINABLE}
    y = dora_output(
        x, case.W0, case.b0, leaves["lora_A"], leaves["lora_B"], leaves["magnitude"], case.lora_alpha / case.r,
        x_d=x_d, detach=False,
    )  # fmt: skip
    return dict(zip(leaves, torch.autograd.grad((y * g).sum(), list(leaves.values())), strict=True))


def _judge_runs(obs: Observation, case: DoRALinearCase) -> None:
    """Outputs and gradients of every run against PEFT's."""
    for (index, training, run), g, (y_ref, peft_grads, x_d) in zip(
        case.runs(), case.grad_outputs, _peft_runs(case), strict=True
    ):
        x = case.inputs[index]
        mode = f"train mode, lora_dropout={case.p:g}" if training else "eval mode"
        where = f"{case.what} ({mode}, x of shape {tuple(x.shape)})"
        y = expect_tensor(obs, f"{run}/output", f"the output of {where}", shape=tuple(y_ref.shape), hint=OUTPUT_HINT)
        if not is_close(y, y_ref):
            found = recognise(y, _output_mistakes(case, x_d), _builder(case, x, x_d, case.params))
            hint = explain(found) or (
                "Expected PEFT's DoRA: y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·scaling·(x_d Aᵀ Bᵀ), ||V|| = "
                "row norms of W + scaling·B·A."
                + (" Call self.lora_dropout once and use the same x_d in both adapter terms." if training else "")
            )
            assert_close(y, y_ref, f"the output of {where} vs PEFT's DoRA", hint=hint)
        if not obs.facts[f"{run}/output"]["requires_grad"]:
            raise CheckFailed(
                f"the output of {where} does not require grad: don't use torch.no_grad(), .detach() or .data on "
                f"magnitude, lora_A or lora_B in forward."
            )
        not_detached = None
        for name in TRAINABLE:
            facts = obs.facts.get(f"{run}/grad/{name}")
            if facts is None:
                raise CheckFailed(f"the gradient of {name} for {where} was not recorded.", missing=True)
            if facts.get("kind") == "none":
                raise CheckFailed(
                    f"{name} gets no gradient from {where}: use self.{name} itself in forward (not a copy, .data or "
                    f".detach()), so that it trains."
                )
            grad = expect_tensor(
                obs, f"{run}/grad/{name}", f"the gradient of {name} for {where}", shape=tuple(peft_grads[name].shape)
            )
            if is_close(grad, peft_grads[name]):
                continue
            if not_detached is None:
                not_detached = _not_detached_grads(case, x, g, x_d)
            if name != "magnitude" and is_close(grad, not_detached[name]):
                hint = (
                    "the gradient matches DoRA WITHOUT a detached norm: detach ||W + scaling·B·A|| in forward "
                    "(norm.detach()), as the paper (§4.3) and PEFT do; it stays in the forward pass but gets no gradient."
                )
            else:
                hint = "the output matches PEFT but this gradient does not: check for .detach()/.data on trainable parameters in forward."
            assert_close(grad, peft_grads[name], f"the gradient of {name} for {where} vs PEFT's DoRA", hint=hint)


def judge(spec: DoRALinearSpec, obs: Observation) -> str:
    """Judge DoRALinear's observations against PEFT's DoRA; return the summary of a pass or raise CheckFailed."""
    n_layers = 0
    with isolated():
        for case in cases(spec):
            try:
                _judge_structure(obs, case)
                _judge_initial_state(obs, case)
                _judge_runs(obs, case)
            except CheckFailed as failure:
                if failure.missing:  # the probe stopped there: the exception in student code says why
                    student_error(obs, f"{case.key}/error")
                raise
            student_error(obs, f"{case.key}/error")
            if not unchanged(obs, f"{case.key}/end/base_weight", case.W0) or (
                f"{case.key}/end/weight" in obs.tensors and not unchanged(obs, f"{case.key}/end/weight", case.W0)
            ):
                raise CheckFailed(
                    f"{case.what} changed the pretrained weight in place: keep base_layer.weight unchanged (no in-place "
                    f"ops or .data assignments on it; compute the adapted weight as a new tensor)."
                )
            n_layers += 1
    shapes = ", ".join(str(tuple(s)) for s in spec.shapes)
    return (
        f"{n_layers} layers on shapes {shapes} (with/without bias, {spec.dtype}, r={spec.r}) match PEFT's DoRA: "
        f"outputs and gradients in eval and train mode, frozen base, zero-init lora_B, {spec.r}*(in+out)+out "
        f"trainable parameters"
    )


def check_dora_linear(
    DoRALinear: Callable,
    shapes: Sequence[Sequence[int]] = DoRALinearSpec.shapes,
    seeds: Sequence[int] = DoRALinearSpec.seeds,
    r: int = DoRALinearSpec.r,
    lora_alpha: float = DoRALinearSpec.lora_alpha,
    lora_dropout: float = DoRALinearSpec.lora_dropout,
    dtype: torch.dtype | str = torch.float64,
    batch_size: int = DoRALinearSpec.batch_size,
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
    __tracebackhide__ = True
    spec = DoRALinearSpec.make(
        shapes=shapes,
        seeds=seeds,
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        dtype=dtype,
        batch_size=batch_size,
    )
    run_check(getattr(DoRALinear, "__name__", "DoRALinear"), probe, judge, DoRALinear, spec)
