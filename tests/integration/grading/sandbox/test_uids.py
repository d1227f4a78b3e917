"""Sandbox uids of the root grader: one per slot and view, never shared by two grading runs, freed when a run ends."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from labhelpers.grading.sandbox import FIRST_UID, UIDS_PER_RUN, make_sandbox, remove_sandbox
from tests.support.sandbox import needs_bwrap


@needs_bwrap
def test_uids_are_distinct_per_slot_view_and_run():
    if os.geteuid() != 0:
        pytest.skip("sandbox uids are the root grader's")
    first, second = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    try:
        made = [
            make_sandbox(root, slot, view)
            for root in (first, second)
            for slot in (0, 1)
            for view in ("notebook", "probe")
        ]
        uids = [sandbox.uid for sandbox in made]
        assert len(set(uids)) == 8 and all(uid >= FIRST_UID for uid in uids)
        assert max(uids[:4]) - min(uids[:4]) < UIDS_PER_RUN and abs(uids[4] - uids[0]) >= UIDS_PER_RUN
        for sandbox in made:
            remove_sandbox(sandbox)
        subprocess.run(["rm", "-rf", str(first)], check=True)
        # A finished run's range is free again.
        third = Path(tempfile.mkdtemp())
        assert make_sandbox(third, 0, "notebook").uid == uids[0]
        subprocess.run(["rm", "-rf", str(third)], check=True)
    finally:
        subprocess.run(["rm", "-rf", str(first), str(second)], check=True)
