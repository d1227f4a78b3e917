"""The probe/judge boundary: what crosses it is data only, and the judge refuses anything malformed without crashing.

Everything here runs in seconds: observation files written and read, forged or broken on purpose, the test cells read
as check calls, the secret seeds, and judge verdicts for records that are missing, late or forged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import torch

from labhelpers.course import SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import CheckCall, GradedCell, graded_cells, parse_test_cell, with_secret_seeds
from labhelpers.grading.judging import judge_call, judge_cell
from labhelpers.probes.core import Observation
from labhelpers.probes.decompose import DecomposeSpec, probe
from labhelpers.probes.transport import MAX_FACT_BYTES, ObservationError, read, write


def _good(W):
    m = torch.linalg.vector_norm(W, dim=1, keepdim=True)
    return m, W / torch.where(m == 0, torch.ones_like(m), m)


SPEC = DecomposeSpec.make(shapes=[(4, 3)], seeds=[1], dtypes=["float64"])
CALL = CheckCall("check_decompose_weight", "decompose_weight", SPEC.to_json(), key="t.0")


@pytest.fixture
def recorded(tmp_path) -> Path:
    """The observation of a correct decompose_weight, written to tmp_path/t.0.*."""
    write(probe(_good, SPEC), tmp_path / "t.0")
    return tmp_path


def test_an_observation_round_trips_as_data(recorded):
    obs = read(recorded / "t.0")
    assert obs.exceptions == {} and obs.tensors and all(isinstance(v, torch.Tensor) for v in obs.tensors.values())
    assert judge_call(CALL, recorded) == (True, judge_call(CALL, recorded)[1], "")
    assert judge_call(CALL, recorded)[1].startswith("✔ 2 checks")


def _rewrite_facts(folder: Path, change) -> None:
    path = folder / "t.0.json"
    path.write_text(change(path.read_text()))


BROKEN = {
    "no facts": lambda folder: (folder / "t.0.json").unlink(),
    "no tensors": lambda folder: (folder / "t.0.safetensors").unlink(),
    "facts not json": lambda folder: _rewrite_facts(folder, lambda text: text[:-5]),
    "facts a list": lambda folder: _rewrite_facts(folder, lambda text: "[1, 2]"),
    "nan constant": lambda folder: _rewrite_facts(folder, lambda text: text.replace("true", "NaN", 1)),
    "deep nesting": lambda folder: _rewrite_facts(folder, lambda text: "[" * 50 + "]" * 50),
    "oversized facts": lambda folder: _rewrite_facts(folder, lambda text: " " * (MAX_FACT_BYTES + 1) + text),
    "tensors garbage": lambda folder: (folder / "t.0.safetensors").write_bytes(b"\x00" * 64),
    "tensor shape lies": lambda folder: _rewrite_facts(folder, lambda text: text.replace("[4, 1]", "[4, 2]", 1)),
    "facts a link": lambda folder: (
        (folder / "t.0.json").unlink(),
        (folder / "t.0.json").symlink_to("/etc/passwd"),
    ),
    "folder a link": None,  # see below
}


@pytest.mark.parametrize("name", [name for name, breaking in BROKEN.items() if breaking], ids=str)
def test_a_broken_record_is_refused_and_fails_only_its_test(recorded, name):
    BROKEN[name](recorded)
    with pytest.raises(ObservationError):
        read(recorded / "t.0")
    passed, message, reason = judge_call(CALL, recorded)
    assert not passed and reason == "no record" and message.startswith("the grader received no usable record")


def test_a_record_folder_that_is_a_link_is_not_followed(recorded, tmp_path_factory):
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


@pytest.mark.parametrize(
    "facts, reason, phrase",
    [
        ({"__missing__": "decompose_weight"}, "missing", "`decompose_weight` is not defined by your answers"),
        ({"__timeout__": 60}, "timeout", "did not finish within 60 s"),
        ({"__probe_error__": "TypeError: boom"}, "no record", "the check stopped while recording what your code did"),
    ],
    ids=["missing-target", "timeout", "probe-error"],
)
def test_special_and_forged_records_get_a_verdict_not_a_crash(tmp_path, facts, reason, phrase):
    write(Observation(facts=facts), tmp_path / "t.0")
    passed, message, got = judge_call(CALL, tmp_path)
    assert not passed and got == reason and phrase in message


@pytest.mark.parametrize(
    "facts",
    [
        {"case0/result": {"kind": "sequence", "type": "tuple", "length": 2}},
        {"case0/result": {"kind": "sequence", "type": "tuple", "length": 2}, "case0/magnitude": {"kind": "tensor"}},
        {"case0/result": "yes", "case0/error": 3},
        {"case0/error": {"type": "NotImplementedError"}},
    ],
    ids=["no-values", "tensor-without-shape", "wrong-types", "error-without-message"],
)
def test_forged_incomplete_records_fail_without_crashing_the_judge(tmp_path, facts):
    write(Observation(facts=facts), tmp_path / "t.0")
    passed, message, reason = judge_call(CALL, tmp_path)
    assert not passed and message and reason in ("", "grader error")


def test_forged_values_are_judged_like_any_answer(tmp_path):
    obs = probe(_good, SPEC)
    obs.tensors["case0/magnitude"] = obs.tensors["case0/magnitude"] * 2  # a forged record is only an answer
    write(obs, tmp_path / "t.0")
    passed, message, reason = judge_call(CALL, tmp_path)
    assert not passed and reason == "" and "does not match the reference" in message


def test_a_cell_passes_only_when_every_call_passes(recorded):
    cell = GradedCell("t", 3, 1, (CALL, CheckCall(CALL.check, CALL.target, CALL.spec, key="t.1")))
    verdict = judge_cell(cell, list(cell.calls), recorded)
    assert not verdict.passed and verdict.reason == "no record"
    os.link(recorded / "t.0.json", recorded / "t.1.json")
    os.link(recorded / "t.0.safetensors", recorded / "t.1.safetensors")
    verdict = judge_cell(cell, list(cell.calls), recorded)
    assert verdict.passed and verdict.message.endswith("(and 1 more check on other inputs)")


def test_every_test_cell_of_the_notebook_reads_as_check_calls():
    cells = graded_cells(nbformat.read(SOURCE_NOTEBOOK, as_version=4))
    assert [c.grade_id for c in cells] == [
        "decompose_weight_matches_definition", "dora_linear_matches_peft", "dora_direction_gradient_matches_autograd",
        "lora_configs_are_correct", "train_one_epoch_matches_reference", "evaluate_accuracy_matches_reference",
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
    with pytest.raises(LabGradingError, match=__import__("re").escape(phrase)):
        parse_test_cell(source, "t")


def test_secret_seeds_are_fixed_by_the_secret_and_differ_between_calls_and_secrets():
    first = with_secret_seeds(CALL, b"a" * 32)
    assert first == with_secret_seeds(CALL, b"a" * 32)
    assert first.spec["seeds"] != with_secret_seeds(CALL, b"b" * 32).spec["seeds"] != SPEC.seeds
    other = with_secret_seeds(CheckCall(CALL.check, CALL.target, CALL.spec, key="t.1"), b"a" * 32)
    assert other.spec["seeds"] != first.spec["seeds"]
    assert json.loads(json.dumps(first.spec)) == json.loads(json.dumps(first.spec))
