"""The probes in their real sandbox, in one run: what hangs or dies costs only its own test, and reference code (the
lab's, PEFT's DoRA layer) is out of reach."""

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
from labhelpers.probes import PROBES

# Restarts the sandboxed runner four times (each imports torch and PEFT): a minute, so not in `make test-unit`.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(problem()), reason="needs bubblewrap")]

ANSWERS = {
    "a correct answer": (
        "%%time\n!pip install peft\nimport torch\n\n"
        "def decompose_weight(W):\n"
        "    m = torch.linalg.vector_norm(W, dim=1, keepdim=True)\n"
        "    return m, W / torch.where(m == 0, torch.ones_like(m), m)\n\n"
        "print('top-level statements are not run when grading')\n"
        "while True:\n    pass\n"
    ),
    "a class that hangs while it is defined": (
        "import signal\nclass Stuck:\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"
    ),
    "a call that ignores its time-out": (
        "def dora_direction_gradient(grad_weight, weight, magnitude, detach_norm=True):\n"
        "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"
    ),
    "a call that ends the process": "def evaluate_accuracy(model, loader):\n    import os\n    os._exit(3)\n",
    "the lab's reference code": "from labhelpers.analysis import magnitude_direction_change\n",
    "PEFT's DoRA layer": (
        "import torch.nn as nn\nfrom peft import LoraConfig, inject_adapter_in_model\n\n"
        "class DoRALinear(nn.Module):\n"
        "    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):\n"
        "        super().__init__()\n"
        "        holder = nn.Module()\n        holder.layer = base_layer\n"
        "        config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=['layer'], use_dora=True)\n"
        "        self.inner = inject_adapter_in_model(config, holder).layer\n"
    ),
}
TARGETS = {
    "check_decompose_weight": "decompose_weight",
    "check_dora_direction_gradient": "dora_direction_gradient",
    "check_evaluate_accuracy": "evaluate_accuracy",
    "check_magnitude_direction_change": "magnitude_direction_change",
    "check_dora_linear": "DoRALinear",
    "check_train_one_epoch": "train_one_epoch",
}


@pytest.fixture(scope="module")
def verdicts():
    """Probe every call once in a real probe sandbox, and judge the records."""
    scratch = Path(tempfile.mkdtemp(prefix="dora-probe-test-"))
    scratch.chmod(0o711)
    box = make_sandbox(scratch, 0, "probe", Limits(memory_bytes=4 * 2**30), overlays=_probe_overlays())
    calls = [
        CheckCall(check, target, PROBES[check][0].make().to_json(), key=f"{target}.0")
        for check, target in TARGETS.items()
    ]
    answers = [{"label": label, "source": source} for label, source in ANSWERS.items()]
    try:
        started = time.monotonic()
        folder, notes = run_probes(box, answers, ["import torch"], calls, 3, time.time() + 600, load_budget=20)
        seconds = time.monotonic() - started
        yield {call.target: judge_call(call, folder) for call in calls}, notes, seconds
    finally:
        remove_sandbox(box)
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_correct_answer_passes_whatever_else_the_submission_does(verdicts):
    # Its cell is a %%time cell magic with a shell command: the probe loads the body, never runs the command.
    results, _, seconds = verdicts
    assert results["decompose_weight"][0], results["decompose_weight"]
    assert seconds < 180


def test_a_definition_that_hangs_while_loading_is_skipped_with_a_note(verdicts):
    _, notes, _ = verdicts
    assert notes == ["a class that hangs while it is defined: a statement that did not finish loading was skipped"]


@pytest.mark.parametrize(
    "target, reason, phrase",
    [
        ("dora_direction_gradient", "timeout", "the check did not finish within 3 s."),
        ("evaluate_accuracy", "no record", "your code ended the process while this check ran (exit status 3)"),
        ("magnitude_direction_change", "unavailable", "labhelpers.analysis.magnitude_direction_change is part of the lab's own code"),
        ("DoRALinear", "unavailable", "PEFT's DoRA layer is not available to graded answers"),
        ("train_one_epoch", "missing", "`train_one_epoch` is not defined by your answers"),
    ],
)  # fmt: skip
def test_each_failure_costs_only_its_own_test_and_says_why(verdicts, target, reason, phrase):
    passed, message, got = verdicts[0][target]
    assert not passed and got == reason and phrase in message, message
