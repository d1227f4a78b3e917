"""The judges of what DoRALinear computes: its initial values and output, then outputs and gradients against PEFT's."""

from __future__ import annotations

import torch

from labhelpers.checks.core import CheckFailed, assert_close, expect_tensor, explain, is_close, recognise
from labhelpers.checks.dora_linear.mistakes import PEFT_FORMULA, output_builder, output_mistakes
from labhelpers.checks.dora_linear.reference import PeftRun, case_inputs, not_detached_grads, peft_runs
from labhelpers.probes.core import Observation
from labhelpers.probes.dora_linear import TRAINABLE, DoRALinearCase, row_norms

LORA_INIT = (
    "LoRA paper, Hu et al. 2021, §4.1; PEFT draws lora_A Kaiming-uniform, see reset_lora_parameters in "
    "peft/tuners/lora/layer.py"
)
"""Where the init of lora_A and lora_B is written down."""
OUTPUT_HINT = "forward maps an input (..., in_features) to an output (..., out_features), like nn.Linear."


def judge_initial_values(obs: Observation, case: DoRALinearCase) -> None:
    """Check PEFT's init: lora_B zero, lora_A random, magnitude the row norms of the base weight."""
    A, B, m = (obs.tensors[f"{case.key}/attr/{name}"] for name in ("lora_A", "lora_B", "magnitude"))
    if bool(B.any()):
        if not bool(A.any()):
            raise CheckFailed(
                f"the inits of lora_A and lora_B are swapped: lora_B starts at zero and lora_A random, so that the "
                f"layer starts equal to its base layer and both get gradients ({LORA_INIT})."
            )
        raise CheckFailed(
            f"lora_B is not zero at the start: with B = 0 the update B·A is zero, so the layer starts exactly equal to "
            f"its base layer ({LORA_INIT})."
        )
    if not bool(A.any()):
        raise CheckFailed(
            f"lora_A is all zeros at the start: with lora_B also zero, dL/dA has a factor B and dL/dB a factor A, so "
            f"neither ever gets a gradient and the adapter never trains. lora_A starts random ({LORA_INIT})."
        )
    norms = row_norms(case.W0)
    if not is_close(m, norms):
        if is_close(m, torch.ones_like(m)):
            hint = "magnitude starts at ones: it starts at the length of each row of W0 (Exercise 1's magnitude)."
        elif is_close(m, norms**2):
            hint = "magnitude starts at the squared row norms: the L2 norm is the square root of the sum of squares."
        else:
            hint = "magnitude does not start at the length of each row of W0 (Exercise 1's magnitude)."
        assert_close(
            m,
            norms,
            "DoRALinear.magnitude at initialisation",
            hint=hint + " Then m·V/‖V‖ = W0 at the start, and the layer starts equal to its base layer.",
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
                "dropout is applied to the frozen base path too: in train mode with lora_B = 0 and magnitude = ‖W0‖ "
                "the output should equal base_layer(x) exactly, and it differs. The frozen path takes the clean x and "
                f"only the adapter path the dropped-out x_d, as in PEFT: {PEFT_FORMULA}."
            )
        else:
            found = recognise(
                y, output_mistakes(case.r, case.lora_alpha, False), output_builder(case_inputs(case, x, None, params))
            )
            hint = explain(found) or (
                "a fresh DoRALinear (lora_B = 0, magnitude = the row norms of W0) should compute exactly base_layer(x), "
                "and yours does not, in a way no known mistake explains."
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
            f"your output differs from PEFT's DoRA in a way no known mistake explains. PEFT computes {PEFT_FORMULA}, "
            f"with V = W0 + s·B·A and ‖V‖ its row norms (paper Eq. 5 with PEFT's scaling s; Exercise 2's contract)."
            + (
                " Draw the dropout once per forward and use the same x_d in both adapter terms (PEFT calls its "
                "dropout once)."
                if run.training
                else ""
            )
        )
        assert_close(y, run.output, f"the output of {where} vs PEFT's DoRA", hint=hint)
    if not obs.facts[f"{run.key}/output"]["requires_grad"]:
        raise CheckFailed(
            f"the output of {where} does not require grad: forward cut the graph from magnitude, lora_A and lora_B (a "
            f"no-grad block, a detached copy, or .data), so autograd sees them as constants and nothing would train."
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
                f"{name} gets no gradient from {where}: forward must compute with the parameter itself; a detached "
                f"copy or its .data is a constant to autograd, so {name} would never train."
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
                "the gradient matches DoRA without a detached norm: the paper (§4.3) and PEFT treat ‖V‖ = ‖W0 + "
                "s·B·A‖ as a constant in backpropagation. It follows V in the forward pass but gets no gradient, which "
                "saves memory; Exercise 3 shows what it changes in the gradient."
            )
        else:
            hint = (
                f"the output matches PEFT but the gradient of {name} does not: part of the computation that involves "
                f"{name} is cut from autograd's graph (a detached copy, .data, or a no-grad block)."
            )
        assert_close(grad, expected, f"the gradient of {name} for {where} vs PEFT's DoRA", hint=hint)


def judge_runs(obs: Observation, case: DoRALinearCase) -> None:
    """Check the outputs and gradients of every pass against PEFT's, on the same inputs and dropout masks."""
    for run in peft_runs(case):
        judge_output(obs, case, run)
        judge_gradients(obs, case, run)
