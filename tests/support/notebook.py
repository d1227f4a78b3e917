"""The solutions notebook's own test settings, so that tests use the calls the notebook makes instead of copies."""

from __future__ import annotations

import nbformat

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.grading.calls import graded_cells


def notebook_calls(check: str) -> dict[str, dict]:
    """Return {call key: keyword arguments} of every call of `check` in the solutions notebook's test cells."""
    source = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    return {call.key: call.spec for cell in graded_cells(source) for call in cell.calls if call.check == check}
