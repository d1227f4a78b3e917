"""A correct decompose_weight, its spec, its check call and its recorded observation: data for the boundary tests."""

from __future__ import annotations

from pathlib import Path

import torch

from labhelpers.grading.calls import CheckCall
from labhelpers.probes.decompose import DecomposeSpec, probe
from labhelpers.probes.transport import write


def good_decompose(W):
    m = torch.linalg.vector_norm(W, dim=1, keepdim=True)
    return m, W / torch.where(m == 0, torch.ones_like(m), m)


SPEC = DecomposeSpec.make(shapes=[(4, 3)], seeds=[1], dtypes=["float64"])
CALL = CheckCall("check_decompose_weight", "decompose_weight", SPEC.to_json(), key="t.0")


def record_good(folder: Path) -> Path:
    """Write the observation of a correct decompose_weight to folder/t.0.*; return the folder."""
    write(probe(good_decompose, SPEC), folder / "t.0")
    return folder
