"""Exercise 2's probe: build DoRALinear around chosen nn.Linear layers and record its structure, outputs and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product

import torch
from torch import nn

from labhelpers.probes.core import (
    DTYPES,
    MISSING,
    Observation,
    Spec,
    StudentError,
    attribute,
    call,
    describe,
    isolated,
    rand,
    randn,
    reseed,
)

ATTRIBUTES = (
    "weight",
    "bias",
    "magnitude",
    "lora_A",
    "lora_B",
    "scaling",
    "r",
    "in_features",
    "out_features",
    "lora_dropout",
)
"""The attributes a DoRALinear must have (PEFT's names), in the order the judge checks them."""
TRAINABLE = ("lora_A", "lora_B", "magnitude")
"""The parameters DoRA trains."""


@dataclass(frozen=True)
class DoRALinearSpec(Spec):
    """Inputs of check_dora_linear.

    Attributes:
        shapes: base weight shapes (out_features, in_features).
        seeds: seeds of the base layer, the adapter values, the inputs and the dropout masks.
        r, lora_alpha, lora_dropout: the adapter's settings (lora_dropout > 0 for the train-mode checks).
        dtype: dtype of the base layer and inputs, by name.
        batch_size: rows of the 2-D input; the 3-D input is (2, 3, in_features).
    """

    shapes: tuple[tuple[int, int], ...] = ((6, 10), (9, 4))
    seeds: tuple[int, ...] = (0, 1)
    r: int = 4
    lora_alpha: float = 6.0
    lora_dropout: float = 0.25
    dtype: str = "float64"
    batch_size: int = 8

    def validate(self) -> None:
        super().validate()
        if not (isinstance(self.r, int) and self.r >= 1 and self.batch_size >= 1 and 0 <= self.lora_dropout < 1):
            raise ValueError(
                f"r={self.r}, batch_size={self.batch_size}, lora_dropout={self.lora_dropout}: out of range"
            )


@dataclass(frozen=True)
class DoRALinearCase:
    """One layer to build and exercise, and every input of it (the same on both sides of the grading boundary).

    Attributes:
        key: the prefix of everything the probe records about this layer.
        W0, b0: the base layer's weight (out, in) and bias (out,) or None.
        p: lora_dropout of this layer (0 for the no-dropout case).
        seed: reseeded before each forward, so that the student's layer and PEFT draw the same dropout mask.
        inputs: x of shape (batch_size, in) and (2, 3, in).
        params: lora_A (r, in), lora_B (out, r), magnitude (out, 1): random values put into the layer after the
            initial-state checks, so that every term of DoRA matters.
        grad_outputs: dL/dy for each (input, mode) in `runs()` order.
    """

    key: str
    W0: torch.Tensor
    b0: torch.Tensor | None
    p: float
    seed: int
    r: int
    lora_alpha: float
    inputs: tuple[torch.Tensor, torch.Tensor]
    params: dict[str, torch.Tensor]
    grad_outputs: tuple[torch.Tensor, ...]

    @property
    def what(self) -> str:
        out_features, in_features = self.W0.shape
        return (
            f"DoRALinear(nn.Linear({in_features}, {out_features}, bias={self.b0 is not None}), r={self.r}, "
            f"lora_alpha={self.lora_alpha:g}, lora_dropout={self.p:g})"
        )

    def base_layer(self) -> nn.Linear:
        """Return a fresh nn.Linear holding W0 and b0."""
        out_features, in_features = self.W0.shape
        layer = nn.Linear(in_features, out_features, bias=self.b0 is not None, dtype=self.W0.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.W0)
            if self.b0 is not None:
                layer.bias.copy_(self.b0)
        return layer

    def runs(self) -> Iterator[tuple[int, bool, str]]:
        """Yield (input index, training, key of the run) for the compared forward/backward passes."""
        for index, training in product(range(len(self.inputs)), (False, True)):
            yield index, training, f"{self.key}/run{index}{'train' if training else 'eval'}"


def row_norms(W: torch.Tensor) -> torch.Tensor:
    """Return the row norms of W as (out_features, 1)."""
    return torch.linalg.vector_norm(W, dim=1, keepdim=True)


def cases(spec: DoRALinearSpec) -> Iterator[DoRALinearCase]:
    """Yield each shape and seed three times: with bias and dropout, without bias, and with bias and no dropout."""
    dtype = DTYPES[spec.dtype]
    for (out_features, in_features), seed in product(spec.shapes, spec.seeds):
        for variant, (bias, p) in enumerate(((True, spec.lora_dropout), (False, spec.lora_dropout), (True, 0.0))):
            generator = torch.Generator().manual_seed(seed)
            with isolated(seed):  # nn.Linear's own init: realistic Kaiming-uniform weights
                base = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
            W0 = base.weight.detach().clone()
            b0 = None if base.bias is None else base.bias.detach().clone()
            inputs = (
                randn((spec.batch_size, in_features), generator, dtype),
                randn((2, 3, in_features), generator, dtype),
            )
            params = {
                "lora_A": randn((spec.r, in_features), generator, dtype) / math.sqrt(in_features),
                "lora_B": 0.3 * randn((out_features, spec.r), generator, dtype),
                "magnitude": row_norms(W0) * (1 + 0.3 * rand((out_features, 1), generator, dtype)),
            }
            grad_outputs = tuple(
                randn((*x.shape[:-1], out_features), generator, dtype) for x in inputs for _training in (False, True)
            )
            key = f"layer{out_features}x{in_features}s{seed}v{variant}"
            yield DoRALinearCase(key, W0, b0, p, seed, spec.r, spec.lora_alpha, inputs, params, grad_outputs)


def _record_attribute(obs: Observation, key: str, layer: nn.Module, name: str) -> None:
    value = attribute(layer, name, "DoRALinear")
    if value is MISSING:
        obs.facts[key] = {"kind": "missing"}
    elif isinstance(value, torch.Tensor):
        obs.tensor(key, value)
    elif isinstance(value, nn.Module):
        facts = describe(value)
        facts["dropout_p"] = float(value.p) if isinstance(value, nn.Dropout) else None
        obs.facts[key] = facts
    else:
        facts = describe(value)
        if name == "scaling" and facts["kind"] not in ("number", "bool"):
            try:
                facts["as_number"] = float(call(float, value, what="float(DoRALinear.scaling)"))
            except StudentError:
                facts["as_number"] = None
        obs.facts[key] = facts


def _probe_layer(DoRALinear: Callable, case: DoRALinearCase, obs: Observation) -> None:
    """Build one layer and record everything the judge needs; StudentError ends the case."""
    key, what = case.key, case.what
    base = case.base_layer()
    layer = call(DoRALinear, base, r=case.r, lora_alpha=case.lora_alpha, lora_dropout=case.p, what=what)
    obs.facts[f"{key}/layer"] = describe(layer)
    if not isinstance(layer, nn.Module):
        return
    obs.tensor(f"{key}/base_after/weight", base.weight)
    if base.bias is not None:
        obs.tensor(f"{key}/base_after/bias", base.bias)
    for name in ATTRIBUTES:
        _record_attribute(obs, f"{key}/attr/{name}", layer, name)
    obs.facts[f"{key}/trainable"] = call(
        lambda: [[name, list(p.shape)] for name, p in layer.named_parameters() if p.requires_grad],
        what=f"listing the parameters of {what}",
    )
    usable = all(
        isinstance(obs.facts[f"{key}/attr/{name}"], dict)
        and obs.facts[f"{key}/attr/{name}"].get("kind") == "parameter"
        and obs.facts[f"{key}/attr/{name}"]["shape"] == list(case.params[name].shape)
        for name in TRAINABLE
    )
    if not usable:
        return  # the judge fails on the structure before it needs any output

    # The initial state: a fresh layer must compute base_layer(x), in eval and in train mode.
    x = case.inputs[0]
    for training in (False, True):
        mode = "train" if training else "eval"
        call(layer.train, training, what=f"{what}.train({training})")
        reseed(case.seed)
        with torch.no_grad():
            y = call(layer, x.clone(), what=f"the forward of {what} ({mode} mode)")
        obs.tensor(f"{key}/init/{mode}", y)

    # Random adapter values, then outputs and gradients for each input, in eval and train mode.
    def set_values() -> None:
        with torch.no_grad():
            for name, value in case.params.items():
                getattr(layer, name).copy_(value)

    call(set_values, what=f"setting lora_A, lora_B and magnitude of {what} to new values")
    for (index, training, run), g in zip(case.runs(), case.grad_outputs, strict=True):
        mode = f"train mode, lora_dropout={case.p:g}" if training else "eval mode"
        x = case.inputs[index]

        def clear() -> None:
            for parameter in layer.parameters():
                parameter.grad = None

        call(clear, what=f"clearing the gradients of {what}")
        call(layer.train, training, what=f"{what}.train({training})")
        reseed(case.seed)
        y = call(layer, x.clone(), what=f"the forward of {what} ({mode}) on x of shape {tuple(x.shape)}")
        obs.tensor(f"{run}/output", y)
        if isinstance(y, torch.Tensor) and y.requires_grad and tuple(y.shape) == tuple(g.shape):
            call(lambda y=y, g=g: (y * g).sum().backward(), what=f"backpropagating through the output of {what}")
            for name in TRAINABLE:
                grad = attribute(attribute(layer, name, "DoRALinear"), "grad", f"DoRALinear.{name}")
                obs.tensor(f"{run}/grad/{name}", grad)
    obs.tensor(f"{key}/end/base_weight", base.weight)
    weight = attribute(layer, "weight", "DoRALinear")
    if isinstance(weight, torch.Tensor):
        obs.tensor(f"{key}/end/weight", weight)


def probe(DoRALinear: Callable, spec: DoRALinearSpec) -> Observation:
    """Build and exercise one DoRALinear per case; record structure, initial outputs, outputs and gradients.

    Records, per case key: "<key>/layer" (what the constructor gave), "<key>/attr/<name>" (each PEFT attribute:
    kind, shape, dtype, requires_grad and initial values), "<key>/trainable" ([name, shape] of trainable
    parameters), "<key>/init/eval|train" (outputs of the fresh layer on the first input), "<run>/output" and
    "<run>/grad/<name>" for every compared run, "<key>/base_after/weight|bias" (base_layer after the constructor),
    "<key>/end/base_weight" and "<key>/end/weight" (after everything), or "<key>/error".
    """
    obs = Observation()
    with isolated():
        for case in cases(spec):
            try:
                _probe_layer(DoRALinear, case, obs)
            except StudentError as failure:
                obs.error(f"{case.key}/error", failure)
                break
    return obs
