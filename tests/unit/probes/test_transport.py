"""The records that cross the probe/judge boundary: safetensors and JSON only, read without following links.

A record folder that is a link, or a tensor of a dtype the judge does not expect, is refused when read.
"""

from __future__ import annotations

import pytest
import torch

from labhelpers.probes.core import Observation
from labhelpers.probes.transport import ObservationError, read, write
from tests.support.observations import record_good


def test_a_record_folder_that_is_a_link_is_not_followed(tmp_path, tmp_path_factory):
    recorded = record_good(tmp_path)
    link = tmp_path_factory.mktemp("elsewhere") / "observations"
    link.symlink_to(recorded)
    with pytest.raises(ObservationError, match="no record folder"):
        read(link / "t.0")


def test_an_unexpected_dtype_is_refused(tmp_path):
    obs = Observation()
    obs.tensor("x", torch.zeros(3, dtype=torch.uint8))
    write(obs, tmp_path / "t.0")
    with pytest.raises(ObservationError, match="dtype"):
        read(tmp_path / "t.0")
