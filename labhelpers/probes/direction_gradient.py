"""Exercise 3's probe: run dora_direction_gradient(grad_weight, weight, magnitude, detach_norm) on random inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product

import torch

from labhelpers.probes.core import DTYPES, Observation, Spec, StudentError, call, isolated, rand, randn


@dataclass(frozen=True)
class DirectionGradientSpec(Spec):
    """Inputs of check_dora_direction_gradient.

    Attributes:
        shapes: weight shapes (out_features, in_features).
        seeds: seeds of V, the magnitude and dL/dW'.
        dtype: dtype of the inputs, by name.
    """

    shapes: tuple[tuple[int, int], ...] = ((6, 9), (10, 4))
    seeds: tuple[int, ...] = (0, 1)
    dtype: str = "float64"


@dataclass(frozen=True)
class DirectionGradientCase:
    """One call: dL/dW' = G, V (out, in), magnitude m (out, 1), with or without a detached norm."""

    key: str
    G: torch.Tensor
    V: torch.Tensor
    m: torch.Tensor
    detach_norm: bool

    @property
    def what(self) -> str:
        dtype = str(self.V.dtype).removeprefix("torch.")
        return (
            f"dora_direction_gradient(grad_weight, weight, magnitude, detach_norm={self.detach_norm}) with weight of "
            f"shape {tuple(self.V.shape)}, {dtype}"
        )


def cases(spec: DirectionGradientSpec) -> Iterator[DirectionGradientCase]:
    """Yield each shape and seed with detach_norm=True, then False."""
    dtype = DTYPES[spec.dtype]
    for index, (shape, seed) in enumerate(product(spec.shapes, spec.seeds)):
        generator = torch.Generator().manual_seed(seed)
        V = randn(shape, generator, dtype)
        m = 0.5 + rand((shape[0], 1), generator, dtype)
        G = randn(shape, generator, dtype)
        for detach_norm in (True, False):
            yield DirectionGradientCase(f"case{index}{'d' if detach_norm else 'n'}", G, V, m, detach_norm)


def probe(dora_direction_gradient: Callable, spec: DirectionGradientSpec) -> Observation:
    """Call the student's function on every case; record the result and whether it changed its arguments.

    Records, per case key: "<key>/result", "<key>/after/<argument>" (each argument after the call), or "<key>/error".
    """
    __tracebackhide__ = True
    obs = Observation()
    with isolated():
        for case in cases(spec):
            inputs = (case.G.clone(), case.V.clone(), case.m.clone())
            try:
                result = call(dora_direction_gradient, *inputs, detach_norm=case.detach_norm, what=case.what)
            except StudentError as failure:
                obs.error(f"{case.key}/error", failure)
                break
            for name, after in zip(("grad_weight", "weight", "magnitude"), inputs, strict=True):
                obs.tensor(f"{case.key}/after/{name}", after)
            obs.tensor(f"{case.key}/result", result)
    return obs
