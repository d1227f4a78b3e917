"""The instructor's test cells as data: each reads as check calls, and anything else is an instructor error.

Every seed of a call is replaced by one drawn from the course's secret.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import CheckCall, graded_cells, parse_test_cell, with_secret_seeds
from tests.support.observations import CALL, SPEC


def test_every_test_cell_of_the_notebook_reads_as_check_calls():
    cells = graded_cells(nbformat.read(SOURCE_NOTEBOOK, as_version=4))
    assert [c.grade_id for c in cells] == [
        "decompose_weight_matches_definition", "dora_linear_matches_peft", "dora_direction_gradient_matches_autograd",
        "peft_models_are_correct", "train_one_epoch_matches_reference", "evaluate_accuracy_matches_reference",
        "magnitude_direction_change_matches_paper",
    ]  # fmt: skip
    hidden = cells[1].calls[1]
    assert (hidden.target, hidden.spec["r"], hidden.spec["dtype"]) == ("DoRALinear", 3, "float32")


@pytest.mark.parametrize(
    "source, phrase",
    [
        ("print('✔ all good')", "is not a call of one of the lab's checks"),
        ("assert True", "is not a call of one of the lab's checks"),
        ("check_decompose_weight(decompose_weight, shapes=make_shapes())", "is not a literal the grader can read"),
        ("check_decompose_weight(decompose_weight, shape=[(3, 4)])", "unexpected argument"),
        ("check_decompose_weight(decompose_weight, seeds=[])", "seeds=()"),
        ("check_decompose_weight()", "the student's name as its one positional argument"),
        ('"""only a docstring."""', "calls no check"),
        ("check_decompose_weight(", "does not parse"),
    ],
)
def test_a_test_cell_the_judge_cannot_run_is_an_instructor_error(source, phrase):
    with pytest.raises(LabGradingError, match=re.escape(phrase)):
        parse_test_cell(source, "t")


def test_secret_seeds_are_fixed_by_the_secret_and_differ_between_calls_and_secrets():
    first = with_secret_seeds(CALL, b"a" * 32)
    assert first == with_secret_seeds(CALL, b"a" * 32)
    assert first.spec["seeds"] != with_secret_seeds(CALL, b"b" * 32).spec["seeds"] != SPEC.seeds
    other = with_secret_seeds(CheckCall(CALL.check, CALL.target, CALL.spec, key="t.1"), b"a" * 32)
    assert other.spec["seeds"] != first.spec["seeds"]
    assert json.loads(json.dumps(first.spec)) == json.loads(json.dumps(first.spec))
