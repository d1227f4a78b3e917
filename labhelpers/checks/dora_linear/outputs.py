"""The judges of what DoRALinear computes: its initial values and output, then outputs and gradients against PEFT's."""

from __future__ import annotations

import torch

from labhelpers.checks.core import CheckFailed, assert_close, expect_tensor, explain, is_close, recognise
from labhelpers.checks.dora_linear.mistakes import PEFT_FORMULA, output_builder, output_mistakes
from labhelpers.checks.dora_linear.reference import PeftRun, case_inputs, not_detached_grads, peft_runs
from labhelpers.probes.core import Observation
from labhelpers.probes.dora_linear import TRAINABLE, DoRALinearCase, row_norms

OUTPUT_HINT = "forward should `return` a tensor of shape (..., out_features)."


def judge_initial_values(obs: Observation, case: DoRALinearCase) -> None:
    """Check PEFT's init: lora_B zero, lora_A random, magnitude the row norms of the base weight."""
    A, B, m = (obs.tensors[f"{case.key}/attr/{name}"] for name in ("lora_A", "lora_B", "magnitude"))
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
    norms = row_norms(case.W0)
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


def judge_initial_output(obs: Observation, case: DoRALinearCase) -> None:
    """Check that a fresh layer computes base_layer(x) exactly, in eval and in train mode (dropout on the adapter)."""
    params = {name: obs.tensors[f"{case.key}/attr/{name}"] for name in ("lora_A", "lora_B", "magnitude")}
    x = case.inputs[0]
    expected = torch.nn.functional.linear(x, case.W0, case.b0)
    for mode in ("eval", "train"):
        y = expect_tensor(
            obs,
            f"{case.key}/init/{mode}",
            f"the output of {case.what} ({mode} mode)",
            shape=tuple(expected.shape),
            hint=OUTPUT_HINT,
        )
        if is_close(y, expected):
            continue
        if mode == "train" and case.p > 0:
            hint = (
                "In train mode with lora_B = 0 and magnitude = ||W||, the output should equal base_layer(x) exactly, "
                "but it differs: dropout is applied to the frozen base path too. Apply lora_dropout on the adapter path "
                f"only, as PEFT: {PEFT_FORMULA}."
            )
        else:
            found = recognise(
                y, output_mistakes(case.r, case.lora_alpha, False), output_builder(case_inputs(case, x, None, params))
            )
            hint = explain(found) or (
                "A fresh DoRALinear (lora_B = 0, magnitude = row norms of W) should compute exactly base_layer(x)."
            )
        assert_close(y, expected, f"the output of a fresh {case.what} vs base_layer(x) ({mode} mode)", hint=hint)


def _where(case: DoRALinearCase, run: PeftRun) -> str:
    mode = f"train mode, lora_dropout={case.p:g}" if run.training else "eval mode"
    return f"{case.what} ({mode}, x of shape {tuple(run.inputs.x.shape)})"


def judge_output(obs: Observation, case: DoRALinearCase, run: PeftRun) -> None:
    """Check that one pass's output matches PEFT's and carries a gradient; name a known wrong formula."""
    where = _where(case, run)
    y = expect_tensor(
        obs, f"{run.key}/output", f"the output of {where}", shape=tuple(run.output.shape), hint=OUTPUT_HINT
    )
    if not is_close(y, run.output):
        dropout = run.inputs.x_d is not None
        found = recognise(y, output_mistakes(case.r, case.lora_alpha, dropout), output_builder(run.inputs))
        hint = explain(found) or (
            "Expected PEFT's DoRA: y = base(x) + (m/||V|| - 1)·(x_d Wᵀ) + (m/||V||)·scaling·(x_d Aᵀ Bᵀ), ||V|| = "
            "row norms of W + scaling·B·A."
            + (" Call self.lora_dropout once and use the same x_d in both adapter terms." if run.training else "")
        )
        assert_close(y, run.output, f"the output of {where} vs PEFT's DoRA", hint=hint)
    if not obs.facts[f"{run.key}/output"]["requires_grad"]:
        raise CheckFailed(
            f"the output of {where} does not require grad: don't use torch.no_grad(), .detach() or .data on "
            f"magnitude, lora_A or lora_B in forward."
        )


def judge_gradients(obs: Observation, case: DoRALinearCase, run: PeftRun) -> None:
    """Check that the gradients of magnitude, lora_A and lora_B match PEFT's; name a norm left attached."""
    where = _where(case, run)
    not_detached = None
    for name in TRAINABLE:
        facts = obs.facts.get(f"{run.key}/grad/{name}")
        if facts is None:
            raise CheckFailed(f"the gradient of {name} for {where} was not recorded.", missing=True)
        if facts.get("kind") == "none":
            raise CheckFailed(
                f"{name} gets no gradient from {where}: use self.{name} itself in forward (not a copy, .data or "
                f".detach()), so that it trains."
            )
        expected = run.grads[name]
        grad = expect_tensor(
            obs, f"{run.key}/grad/{name}", f"the gradient of {name} for {where}", shape=tuple(expected.shape)
        )
        if is_close(grad, expected):
            continue
        if not_detached is None:
            not_detached = not_detached_grads(run)
        if name != "magnitude" and is_close(grad, not_detached[name]):
            hint = (
                "the gradient matches DoRA WITHOUT a detached norm: detach ||W + scaling·B·A|| in forward "
                "(norm.detach()), as the paper (§4.3) and PEFT do; it stays in the forward pass but gets no gradient."
            )
        else:
            hint = "the output matches PEFT but this gradient does not: check for .detach()/.data on trainable parameters in forward."
        assert_close(grad, expected, f"the gradient of {name} for {where} vs PEFT's DoRA", hint=hint)


def judge_runs(obs: Observation, case: DoRALinearCase) -> None:
    """Check the outputs and gradients of every pass against PEFT's, on the same inputs and dropout masks."""
    for run in peft_runs(case):
        judge_output(obs, case, run)
        judge_gradients(obs, case, run)
