"""The probes in their real sandbox: a submission's definitions load, hangs and crashes cost only their own test,
and reference code (the lab's, PEFT's DoRA layer) is out of reach."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from labhelpers.grading.calls import CheckCall
from labhelpers.grading.judging import judge_call
from labhelpers.grading.probing import run_probes
from labhelpers.grading.sandbox import Limits, make_sandbox, problem, remove_sandbox
from labhelpers.grading.worker import _probe_overlays
from labhelpers.probes.decompose import DecomposeSpec
from labhelpers.probes.weight_change import WeightChangeSpec

pytestmark = pytest.mark.skipif(bool(problem()), reason="needs bubblewrap")

GOOD = """
import torch

def decompose_weight(W):
    m = torch.linalg.vector_norm(W, dim=1, keepdim=True)
    return m, W / torch.where(m == 0, torch.ones_like(m), m)
"""
MEASURE = """
def magnitude_direction_change(W0, W):
    n0, n = W0.norm(dim=1), W.norm(dim=1)
    return (n - n0).abs().mean().item(), (1 - (W0 * W).sum(1) / (n0 * n)).mean().item()
"""
DECOMPOSE = CheckCall(
    "check_decompose_weight", "decompose_weight", DecomposeSpec.make(shapes=[(4, 3)]).to_json(), "a.0"
)
MEASURE_CALL = CheckCall(
    "check_magnitude_direction_change", "magnitude_direction_change", WeightChangeSpec.make().to_json(), "b.0"
)
CALLS = [DECOMPOSE, MEASURE_CALL]


@pytest.fixture
def sandbox():
    scratch = Path(tempfile.mkdtemp(prefix="dora-probe-test-"))
    scratch.chmod(0o711)
    box = make_sandbox(scratch, 0, "probe", Limits(memory_bytes=4 * 2**30), overlays=_probe_overlays())
    yield box
    remove_sandbox(box)
    shutil.rmtree(scratch, ignore_errors=True)


def _run(sandbox, *sources, timeout=20):
    answers = [{"label": f"answer cell {i}", "source": s} for i, s in enumerate(sources)]
    folder, notes = run_probes(sandbox, answers, ["import torch"], CALLS, timeout, time.time() + 300, load_budget=25)
    return {call.key: judge_call(call, folder) for call in CALLS}, notes


def test_correct_definitions_pass_and_top_level_code_is_not_run(sandbox):
    verdicts, notes = _run(sandbox, GOOD + "\nprint('x' * 10**7)\nwhile True:\n    pass\n", MEASURE)
    assert verdicts["a.0"][0] and verdicts["b.0"][0] and notes == []


def test_a_definition_that_hangs_while_loading_is_skipped_and_only_its_test_fails(sandbox):
    hanging = "import signal\nclass Stuck:\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"
    verdicts, notes = _run(sandbox, GOOD, hanging, MEASURE)
    assert verdicts["a.0"][0] and verdicts["b.0"][0]
    assert notes == ["answer cell 1: a statement that did not finish loading was skipped"]


def test_a_call_that_ignores_its_time_out_fails_alone(sandbox):
    stuck = GOOD.replace(
        "def decompose_weight(W):",
        "def decompose_weight(W):\n    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass",
    )
    verdicts, notes = _run(sandbox, stuck, MEASURE, timeout=5)
    assert verdicts["a.0"] == (False, "the check did not finish within 5 s.", "timeout")
    assert verdicts["b.0"][0]


def test_a_call_that_kills_the_process_fails_alone(sandbox):
    dying = GOOD.replace("def decompose_weight(W):", "def decompose_weight(W):\n    import os\n    os._exit(3)")
    verdicts, _ = _run(sandbox, dying, MEASURE)
    assert not verdicts["a.0"][0] and verdicts["b.0"][0]


@pytest.mark.parametrize(
    "source",
    [
        "from labhelpers.analysis import magnitude_direction_change\n",
        "def magnitude_direction_change(W0, W):\n    from labhelpers import analysis\n"
        "    return analysis.magnitude_direction_change(W0, W)\n",
        "import labhelpers.checks.weight_change as wc\n"
        "def magnitude_direction_change(W0, W):\n    return wc.reference_change(W0, W)\n",
    ],
    ids=["import-at-top", "import-inside", "judge-module"],
)
def test_the_labs_reference_code_is_out_of_reach(sandbox, source):
    verdicts, _ = _run(sandbox, GOOD, source)
    passed, message, reason = verdicts["b.0"]
    assert not passed and reason == "unavailable" and "not available to graded answers" in message


def test_peft_dora_layer_is_a_stub_in_the_probe_sandbox(sandbox):
    source = (
        "def magnitude_direction_change(W0, W):\n"
        "    import torch\n"
        "    from peft.tuners.lora.dora import DoraLinearLayer\n"
        "    DoraLinearLayer(fan_in_fan_out=False)\n"
        "    return 0.0, 0.0\n"
    )
    verdicts, _ = _run(sandbox, GOOD, source)
    passed, message, reason = verdicts["b.0"]
    assert not passed and reason == "unavailable" and "PEFT's DoRA layer" in message
