"""make_peft_model's probe in its real sandbox, where PEFT's DoRA layer is a stub: an honest answer earns its point
(the judge builds the DoRA model the answer asked PEFT for), and a DoRA-only mistake is still found."""

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

# One start of the sandboxed runner (it imports torch, transformers and PEFT): about 15 s, so not in `make test-unit`.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(problem()), reason="needs bubblewrap")]

CONFIG = (
    "    config = LoraConfig(task_type=TaskType.SEQ_CLS, r={r}, lora_alpha=16, lora_dropout=0.1,\n"
    "                        target_modules=['query', 'value'], use_dora=use_dora)\n"
)
ANSWERS = {
    "honest": "def make_peft_model(base_model, use_dora):\n"
    + CONFIG.format(r=8)
    + "    return get_peft_model(base_model, config)\n",
    "dora_rank": (
        "def make_peft_model_r4(base_model, use_dora):\n"
        + CONFIG.format(r="4 if use_dora else 8")
        + "    return get_peft_model(base_model, config)\n"
    ),
}


@pytest.fixture(scope="module")
def verdicts():
    """Probe both answers once in a real probe sandbox, and judge the records here, with the real PEFT."""
    scratch = Path(tempfile.mkdtemp(prefix="dora-peft-probe-test-"))
    scratch.chmod(0o711)
    box = make_sandbox(scratch, 0, "probe", Limits(memory_bytes=4 * 2**30), overlays=_probe_overlays())
    spec = PROBES["check_peft_model"][0].make(seeds=[11]).to_json()
    calls = [
        CheckCall("check_peft_model", "make_peft_model", spec, key="make_peft_model.0"),
        CheckCall("check_peft_model", "make_peft_model_r4", spec, key="make_peft_model_r4.0"),
    ]
    answers = [{"label": label, "source": source} for label, source in ANSWERS.items()]
    preamble = ["import torch\nfrom peft import LoraConfig, TaskType, get_peft_model"]
    try:
        folder, _ = run_probes(box, answers, preamble, calls, 30, time.time() + 300, load_budget=60)
        yield {call.target: judge_call(call, folder) for call in calls}
    finally:
        remove_sandbox(box)
        shutil.rmtree(scratch, ignore_errors=True)


def test_an_honest_make_peft_model_passes_although_pefts_dora_layer_is_a_stub_there(verdicts):
    passed, message, _ = verdicts["make_peft_model"]
    assert passed, message


def test_a_mistake_in_the_dora_config_is_found_from_what_the_answer_asked_peft_to_build(verdicts):
    passed, message, _ = verdicts["make_peft_model_r4"]
    assert not passed and "Expected: r=8; got: r=4" in message, message
