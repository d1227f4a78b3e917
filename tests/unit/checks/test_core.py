"""The shared pieces of every check: tolerances, messages, known mistakes, the probe's record and its one call wrapper."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
import torch

import labhelpers.checks
from labhelpers.checks.core import (
    FLOAT16,
    FLOAT32,
    FLOAT64,
    CheckFailed,
    Mistake,
    assert_close,
    expect_tensor,
    explain,
    recognise,
    run_check,
    student_error,
)
from labhelpers.probes.core import Observation, Spec, StudentError, call, describe, isolated
from labhelpers.probes.decompose import DecomposeSpec


def test_assert_close_accepts_round_off_and_reports_the_largest_difference():
    expected = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(expected * (1 + 1e-12), expected, "round-off")
    assert_close(expected.float(), expected, "float32 copy")  # judged with float32's tolerance
    wrong = expected.clone()
    wrong[2, 3] += 0.5
    with pytest.raises(CheckFailed) as info:
        assert_close(wrong, expected, "the output", hint="the scaling is missing.")
    message = str(info.value)
    assert message.startswith("The scaling is missing. The output does not match the reference: expected ")
    assert f"got {float(wrong[2, 3]):.6g} at index (2, 3), the largest difference (0.5)" in message
    assert message.endswith("Tolerance: |got − expected| ≤ 1e-09·max(1, max|expected|) + 1e-07·|expected| per "
                            "element (float64).")  # fmt: skip


def test_tolerances_are_named_and_tighter_for_more_precise_dtypes():
    assert FLOAT64.rtol < FLOAT32.rtol < FLOAT16.rtol and FLOAT64.rtol < 1e-6


def _recorded(value) -> Observation:
    obs = Observation()
    obs.tensor("x", value) if isinstance(value, torch.Tensor) else obs.facts.__setitem__("x", describe(value))
    return obs


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (None, {}, "X is None: did you forget a `return` statement?"),
        ([1.0, 2.0], {}, "X should be a torch.Tensor, computed with torch operations on the input tensors (a NumPy array or a Python number leaves the dtype, the device and autograd behind). Expected a tensor, got a list of length 2."),
        (torch.zeros(1, 7), {"shape": (5, 1)}, "The shape shows a reduction over another axis, or an axis dropped: a reduction removes the axis it reduces unless asked to keep it (keepdim). X: expected shape (5, 1), got (1, 7)."),
        (torch.zeros(5), {"shape": (5, 1)}, "The shape shows a reduction over another axis, or an axis dropped"),
        (torch.zeros(5, 5), {"shape": (5, 1)}, "A shape larger than expected usually comes from broadcasting: two tensors of different shapes combined element by element, e.g. (n, 1) with (1, n), give (n, n). Write down the shape of each tensor you combine. X: expected shape (5, 1), got (5, 5)."),
        (torch.zeros(2, 5, 1), {"shape": (5, 1)}, "A shape larger than expected usually comes from broadcasting"),
        (torch.zeros(1, 5), {"shape": (5, 1)}, "The result is transposed: keep the layout of the inputs, one row per output feature. X: expected shape (5, 1), got (1, 5)."),
        (torch.zeros(5, 1, dtype=torch.float32), {"dtype": torch.float64}, "New tensors must keep the dtype of the inputs: the check runs in float64 as well as float32, PyTorch creates float32 tensors unless told otherwise, and a conversion (to float or double) changes the dtype. X: expected dtype torch.float64, got torch.float32."),
        (torch.tensor([[1.0], [math.nan]]), {}, "Non-finite values usually come from a division by zero, such as a division by the norm of an all-zero row. X contains 1 NaN and 0 infinite values (first at index (1, 0))."),
        (torch.tensor([math.inf, 1.0]), {}, "X contains 0 NaN and 1 infinite values"),
    ],
    ids=["none", "list", "reduced-wrong-dim", "no-keepdim", "broadcast-square", "broadcast-extra-dim", "transposed", "dtype", "nan", "inf"],
)  # fmt: skip
def test_expect_tensor_names_the_likely_mistake_before_the_evidence(value, kwargs, message):
    with pytest.raises(CheckFailed, match=re.escape(message)):
        expect_tensor(_recorded(value), "x", "x", **kwargs)


def test_expect_tensor_returns_the_recorded_tensor_and_accepts_wildcard_sizes():
    value = torch.ones(3, 2)
    assert torch.equal(expect_tensor(_recorded(value), "x", "x", shape=(None, 2), dtype=torch.float32), value)


def test_a_value_never_recorded_is_missing_not_none():
    with pytest.raises(CheckFailed) as info:
        expect_tensor(Observation(), "x", "x")
    assert info.value.missing


MISTAKES = [
    Mistake("no scaling.", {"scaling": 1.0}),
    Mistake("bias lost.", {"bias": 0.0}),
    Mistake("doubled.", value=lambda: torch.full((3,), 4.0)),
]


def _build(scaling: float = 2.0, bias: float = 1.0) -> torch.Tensor:
    return torch.full((3,), scaling) + bias


@pytest.mark.parametrize(
    "actual, expected",
    [
        (_build(scaling=1.0), ["no scaling."]),
        (torch.full((3,), 4.0), ["doubled."]),
        (_build(scaling=1.0, bias=0.0), ["no scaling.", "bias lost."]),
        (torch.full((3,), 9.0), []),
    ],
    ids=["one", "by-value", "two-together", "unknown"],
)
def test_recognise_names_one_mistake_or_two_together(actual, expected):
    assert [m.message for m in recognise(actual, MISTAKES, _build)] == expected


def test_explain_names_both_of_two_mistakes():
    assert explain(MISTAKES[:2]) == "Two mistakes together: (1) no scaling. (2) bias lost."


def test_call_records_what_was_being_done_and_keeps_the_exception():
    def student(x):
        raise ValueError("shapes do not match")

    with pytest.raises(StudentError) as info:
        call(student, 1, what="f(x)")
    assert info.value.what == "f(x)" and isinstance(info.value.error, ValueError)
    assert call(lambda x, y=0: x + y, 1, y=2, what="g") == 3
    with pytest.raises(StudentError):
        call(42, what="not callable")


def _failing_probe(student, spec):
    obs = Observation()
    try:
        call(student, what="f()")
    except StudentError as failure:
        obs.error("error", failure)
    return obs


def _judge_from_error(spec, obs):

    student_error(obs, "error")
    return "fine"


def test_run_check_raises_from_the_students_exception_so_their_frames_show(capsys):
    def student():
        raise ValueError("shapes do not match")

    with pytest.raises(
        AssertionError, match=re.escape("f() raised ValueError: shapes do not match. Fix the error")
    ) as info:
        run_check("f", _failing_probe, _judge_from_error, student, None)
    assert isinstance(info.value.__cause__, ValueError) and type(info.value).__name__ == "AssertionError"
    with pytest.raises(AssertionError, match=re.escape("replace `raise NotImplementedError()` with your code")):
        run_check("f", _failing_probe, _judge_from_error, lambda: (_ for _ in ()).throw(NotImplementedError()), None)
    run_check("f", _failing_probe, _judge_from_error, lambda: None, None)
    assert capsys.readouterr().out == "✔ f passed: fine\n"


def test_isolated_leaves_the_callers_random_state_and_threads_as_they_were(three_threads):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = three_threads
    with isolated(seed=7):
        torch.rand(100)
        assert torch.get_num_threads() == 1
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


@pytest.mark.parametrize(
    "value, facts",
    [
        (None, {"kind": "none"}),
        (1.5, {"kind": "number", "type": "float", "value": 1.5}),
        (float("nan"), {"kind": "number", "type": "float", "value": "nan"}),
        ((1, 2), {"kind": "sequence", "type": "tuple", "length": 2}),
        (torch.nn.Identity(), {"kind": "module", "type": "Identity"}),
    ],
    ids=["none", "float", "nan", "tuple", "module"],
)
def test_describe_turns_any_value_into_json_facts(value, facts):
    assert describe(value) == facts


def test_describe_a_parameter_records_its_flags():
    facts = describe(torch.nn.Parameter(torch.zeros(2, 3)))
    assert facts == {
        "kind": "parameter", "shape": [2, 3], "dtype": "float32", "device": "cpu", "requires_grad": True, "finite": True
    }  # fmt: skip


def test_a_spec_normalises_notebook_arguments_and_rejects_bad_ones():
    spec = DecomposeSpec.make(shapes=[[5, 13], (48, 7)], seeds=[11], dtypes=[torch.float32, "float64"])
    assert spec == DecomposeSpec(shapes=((5, 13), (48, 7)), seeds=(11,), dtypes=("float32", "float64"))
    assert DecomposeSpec.from_json(spec.to_json()) == spec
    assert spec.with_seeds([1, 2]).seeds == (1, 2)
    for bad in ({"shapes": [(0, 3)]}, {"seeds": []}, {"dtypes": ["int64"]}, {"seeds": [-1]}):
        with pytest.raises(ValueError):
            DecomposeSpec.make(**bad)
    with pytest.raises(TypeError, match="unexpected argument"):
        DecomposeSpec.make(shape=(3, 4))
    assert issubclass(DecomposeSpec, Spec)


def test_the_traceback_a_student_sees_shows_their_code_not_the_checks():
    def student():
        raise ValueError("shapes do not match")

    with pytest.raises(AssertionError) as info:
        run_check("f", _failing_probe, _judge_from_error, student, None)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(info.value._render_traceback_()))
    assert "raise ValueError" in shown and "shapes do not match" in shown
    assert "labhelpers" not in shown and shown.rstrip().endswith(
        "Fix the error in your code (the traceback above shows the line), then run the check again."
    )
    with pytest.raises(AssertionError) as info:
        run_check("f", lambda student, spec: Observation(), lambda spec, obs: expect_tensor(obs, "x", "x"), None, None)
    assert info.value._render_traceback_() == [
        "\x1b[0;31mAssertionError\x1b[0m: X was not recorded: the check stopped before it."
    ]


def test_checks_import_nothing_of_the_lab_but_checks_and_probes():
    """The judges stand on torch and PEFT alone: no check module imports models, training, analysis or the like."""
    package = Path(labhelpers.checks.__file__).parent
    outside = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            outside += [
                f"{path.relative_to(package)}: {name}"
                for name in names
                if name.startswith("labhelpers") and not name.startswith(("labhelpers.checks", "labhelpers.probes"))
            ]
    assert outside == []
