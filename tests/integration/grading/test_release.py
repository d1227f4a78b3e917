"""The student release: nbgrader's release of solutions/ is the committed one, and hides what it must.

nbgrader's validator passes the solutions and fails every test of the untouched release (whole notebooks: slow).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.course import validate
from labhelpers.grading.samples import solution_sources
from tests.support.course import fresh_release, lab_environment


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A release generated now by nbgrader from solutions/, in a temporary course folder."""
    return fresh_release(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def source():
    return nbformat.read(SOURCE_NOTEBOOK, as_version=4)


@pytest.fixture
def lab_env(sst2_dir):
    """Validation runs the notebook in LAB_FAST mode on the local SST-2."""
    with lab_environment(sst2_dir):
        yield


def test_committed_release_equals_a_fresh_nbgrader_release(released):
    assert RELEASE_NOTEBOOK.is_file(), "notebooks/dora/dora_lab.ipynb is missing: run `make release` and commit it"
    assert RELEASE_NOTEBOOK.read_bytes() == released.read_bytes(), (
        "notebooks/dora/dora_lab.ipynb differs from a fresh release of solutions/: run `make release` and commit it"
    )


def test_release_hides_solutions_and_hidden_tests(released, source):
    text = released.read_text()
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert text.count("raise NotImplementedError()") >= len(solution_sources(source))
    assert all(not cell.get("outputs") for cell in nbformat.read(released, as_version=4).cells)


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solutions(lab_env):
    assert validate(SOURCE_NOTEBOOK) == {}


@pytest.mark.slow
def test_nbgrader_validate_invert_fails_every_test_of_the_release(lab_env, released):
    # --invert lists the test cells that pass; on the untouched release none may.
    assert validate(released, invert=True) == {}
