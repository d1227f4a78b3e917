"""The judge's side of the probe/judge boundary: it reads records as data and refuses anything malformed without
crashing.

Observation files written and read, forged or broken on purpose, and the verdicts for records that are missing, late
or forged; a test cell passes only when every one of its calls does. Everything here runs in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from labhelpers.grading.calls import CheckCall, GradedCell
from labhelpers.grading.judging import judge_call, judge_cell
from labhelpers.probes.core import Observation
from labhelpers.probes.decompose import probe
from labhelpers.probes.transport import MAX_FACT_BYTES, ObservationError, read, write
from tests.support.observations import CALL, SPEC, good_decompose, record_good


@pytest.fixture
def recorded(tmp_path) -> Path:
    """The observation of a correct decompose_weight, written to tmp_path/t.0.*."""
    return record_good(tmp_path)


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
    obs = probe(good_decompose, SPEC)
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


def _squared_norm_decompose(W):
    m, direction = good_decompose(W)
    return m**2, direction


def test_a_failure_carries_the_names_of_the_known_mistakes_its_message_explains(recorded, tmp_path):
    cell = GradedCell("t", 3, 1, (CALL,))
    (tmp_path / "squared").mkdir()
    write(probe(_squared_norm_decompose, SPEC), tmp_path / "squared" / "t.0")
    failed = judge_cell(cell, list(cell.calls), tmp_path / "squared")
    assert not failed.passed and failed.mistakes == ["squared_norm"] and "squared length" in failed.message
    passed = judge_cell(cell, list(cell.calls), recorded)
    assert passed.passed and passed.mistakes == []
