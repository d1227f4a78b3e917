"""Exercise 5's probe: run magnitude_direction_change(W0, W) on pairs of weights whose rows turned and rescaled."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product

import torch

from labhelpers.probes.core import DTYPES, Observation, Spec, StudentError, call, describe, isolated


@dataclass(frozen=True)
class WeightChangeSpec(Spec):
    """Inputs of check_magnitude_direction_change.

    Attributes:
        shapes: weight shapes (out_features, in_features); non-square, so that rows and columns differ.
        seeds: seeds of the weights.
        dtypes: dtypes of the weights, by name.
    """

    shapes: tuple[tuple[int, int], ...] = ((12, 7), (5, 20))
    dtypes: tuple[str, ...] = ("float64", "float32")


@dataclass(frozen=True)
class WeightChangeCase:
    key: str
    W0: torch.Tensor
    W: torch.Tensor

    @property
    def what(self) -> str:
        dtype = str(self.W0.dtype).removeprefix("torch.")
        return f"magnitude_direction_change(W0, W) with weights of shape {tuple(self.W0.shape)}, {dtype}"


def changed_weight(W0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return W0 with every row turned by a random amount and rescaled up or down (some rows grow, some shrink)."""
    out_features = W0.shape[0]
    noise = torch.randn(W0.shape, generator=generator, dtype=torch.float64).to(W0.dtype)
    turn = 0.2 + 0.6 * torch.rand(out_features, 1, generator=generator, dtype=torch.float64).to(W0.dtype)
    norms = torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    turned = W0 + turn * noise * norms / math.sqrt(W0.shape[1])
    scale = torch.linspace(0.6, 1.5, out_features, dtype=torch.float64).to(W0.dtype)[:, None]
    return scale * turned * norms / torch.linalg.vector_norm(turned, dim=1, keepdim=True)


def cases(spec: WeightChangeSpec) -> Iterator[WeightChangeCase]:
    for index, (shape, seed, dtype) in enumerate(product(spec.shapes, spec.seeds, spec.dtypes)):
        generator = torch.Generator().manual_seed(seed)
        W0 = torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(DTYPES[dtype])
        yield WeightChangeCase(f"case{index}", W0, changed_weight(W0, generator))


def probe(magnitude_direction_change: Callable, spec: WeightChangeSpec) -> Observation:
    """Call the student's function on every case; record the pair it returned and whether it changed its inputs.

    Records, per case key: "<key>/result", "<key>/delta_m" and "<key>/delta_d" (each value's description, numbers
    included), "<key>/W0_after" and "<key>/W_after" (the inputs after the call), or "<key>/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for case in cases(spec):
            W0, W = case.W0.clone(), case.W.clone()
            try:
                result = call(magnitude_direction_change, W0, W, what=case.what)
                obs.facts[f"{case.key}/result"] = describe(result)
                obs.tensor(f"{case.key}/W0_after", W0)
                obs.tensor(f"{case.key}/W_after", W)
                if isinstance(result, (tuple, list)):
                    parts = call(lambda r=result: list(r), what="reading the pair magnitude_direction_change returned")
                    if len(parts) == 2:
                        for name, value in zip(("delta_m", "delta_d"), parts, strict=True):
                            obs.facts[f"{case.key}/{name}"] = describe(value)
            except StudentError as failure:
                obs.error(f"{case.key}/error", failure)
                break
    return obs
