"""Exercise 1's probe: run decompose_weight(W) on random weights, with and without an all-zero row."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product

import torch

from labhelpers.probes.core import DTYPES, Observation, Spec, StudentError, call, describe, isolated, randn


@dataclass(frozen=True)
class DecomposeSpec(Spec):
    """Inputs of check_decompose_weight.

    Attributes:
        shapes: weight shapes (out_features, in_features).
        seeds: seeds of the weights.
        dtypes: floating dtypes, by name.
    """

    shapes: tuple[tuple[int, int], ...] = ((7, 5), (3, 11))
    dtypes: tuple[str, ...] = ("float64", "float32")


@dataclass(frozen=True)
class DecomposeCase:
    """One call of decompose_weight: W (out_features, in_features), maybe with row `zero_row` all zero."""

    key: str
    W: torch.Tensor
    zero_row: int | None

    @property
    def text(self) -> str:
        dtype = str(self.W.dtype).removeprefix("torch.")
        zero = f", row {self.zero_row} all zero" if self.zero_row is not None else ""
        return f"W of shape {tuple(self.W.shape)}, {dtype}{zero}"


def cases(spec: DecomposeSpec) -> Iterator[DecomposeCase]:
    """Yield the weights to decompose: each shape, seed and dtype, first random, then with its middle row zeroed."""
    for index, (shape, seed, dtype) in enumerate(product(spec.shapes, spec.seeds, spec.dtypes)):
        W = randn(shape, torch.Generator().manual_seed(seed), DTYPES[dtype])
        yield DecomposeCase(f"case{index}", W, None)
        zeroed = W.clone()
        zeroed[shape[0] // 2] = 0
        yield DecomposeCase(f"case{index}z", zeroed, shape[0] // 2)


def probe(decompose_weight: Callable, spec: DecomposeSpec) -> Observation:
    """Call decompose_weight on every case; record what it returned and whether it changed W.

    Records, per case key: "<key>/result" (what came back), "<key>/magnitude" and "<key>/direction" (the two
    values when a pair came back), "<key>/W_after" (W after the call), or "<key>/error".
    """
    obs = Observation()
    with isolated():
        for case in cases(spec):
            W = case.W.clone()
            try:
                result = call(decompose_weight, W, what=f"decompose_weight(W) with {case.text}")
                obs.tensor(f"{case.key}/W_after", W)
                obs.facts[f"{case.key}/result"] = describe(result)
                if isinstance(result, (tuple, list)):
                    parts = call(lambda r=result: list(r), what="reading the pair decompose_weight returned")
                    if len(parts) == 2:
                        for name, value in zip(("magnitude", "direction"), parts, strict=True):
                            obs.tensor(f"{case.key}/{name}", value)
            except StudentError as failure:
                obs.error(f"{case.key}/error", failure)
                break  # the judge stops at the first failing case
    return obs
