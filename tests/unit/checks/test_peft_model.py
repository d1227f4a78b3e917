"""make_peft_model's check: PEFT's model of the lab's config passes; every typical mistake gets its own diagnosis.

Also as in the grading sandbox, where PEFT's DoRA layer is a stub: the probe then records what the answer asked PEFT
to build, and the judge (in a process with the real PEFT) builds it and judges the same way.
"""

from __future__ import annotations

import copy
import json
from unittest import mock

import peft.tuners.lora.variants as variants
import pytest
from peft import LoraConfig, PeftModelForSequenceClassification, TaskType, get_peft_model

from labhelpers.checks.finetune import check_peft_model, judge_peft_model, reference_make_peft_model
from labhelpers.grading import peft_dora_stub
from labhelpers.probes.finetune import PeftModelSpec, peft_model_probe
from tests.support.notebook import notebook_calls
from tests.unit.checks import leaks


def _config(use_dora, **overrides):
    settings = dict(
        task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
    )
    return LoraConfig(**{**settings, "use_dora": use_dora, **overrides})


def _peft(**overrides):
    """make_peft_model built with the lab's config, changed by `overrides`."""
    return lambda model, use_dora: get_peft_model(model, _config(use_dora, **overrides))


def _unfreeze_everything(model, use_dora):
    return get_peft_model(model, _config(use_dora)).requires_grad_(True)


def _not_implemented(model, use_dora):
    raise NotImplementedError()


def _direct(model, use_dora):
    return PeftModelForSequenceClassification(model, _config(use_dora))


def _with_modules_to_save(model, use_dora):
    return get_peft_model(model, _config(use_dora, task_type=None, modules_to_save=["classifier"]))


@pytest.mark.parametrize(
    "make_peft_model",
    [reference_make_peft_model, _direct, _with_modules_to_save],
    ids=["reference", "peft-model-class", "head-named-by-hand"],
)
@pytest.mark.parametrize(
    "config",
    [{"seeds": [4]}, *notebook_calls("check_peft_model").values()],
    ids=["seed4", *notebook_calls("check_peft_model")],
)
def test_peft_model_check_accepts_the_lab_configuration(make_peft_model, config, capsys):
    assert check_peft_model(make_peft_model, **config) is None
    out = capsys.readouterr().out
    assert "✔ make_peft_model passed" in out and "546 (LoRA) and 578 (DoRA) trainable parameters" in out


MISTAKES = [
    ("forgets-use_dora", lambda m, u: get_peft_model(m, _config(False)), "built plain LoRA layers"),
    ("always-dora", lambda m, u: get_peft_model(m, _config(True)), "although plain LoRA was asked for"),
    ("targets-key-too", _peft(target_modules=["query", "key", "value"]), "put adapters on key, query, value"),
    (
        "targets-all-linear",
        _peft(target_modules="all-linear"),
        "Expected: query, value; got: dense, key, query, value",
    ),
    ("head-not-trained", _peft(task_type=None), "leaves the classification head frozen"),
    ("returns-the-config", lambda m, u: _config(u), "returned the LoraConfig itself"),
    ("returns-the-base-model", lambda m, u: m, "not PEFT's wrapper"),
    ("returns-nothing", lambda m, u: None, "returned None"),
    ("wraps-a-copy", lambda m, u: get_peft_model(copy.deepcopy(m), _config(u)), "another model than the one"),
    ("rank-16", _peft(r=16), "Expected: r=8; got: r=16"),
    ("alpha-32", _peft(lora_alpha=32), "Expected: lora_alpha=16; got: lora_alpha=32"),
    ("no-dropout", _peft(lora_dropout=0.0), "Expected: lora_dropout=0.1; got: lora_dropout=0.0"),
    ("base-unfrozen", _unfreeze_everything, "also trains 23 pretrained weight(s)"),
    ("bias-trained", _peft(bias="lora_only"), "also trains 2 pretrained weight(s)"),
    ("not-implemented", _not_implemented, "raised NotImplementedError"),
]


@pytest.mark.parametrize("make_peft_model, message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_peft_model_check_diagnoses_each_mistake_without_giving_the_answer(make_peft_model, message):
    with pytest.raises(AssertionError) as failure:
        check_peft_model(make_peft_model)
    text = str(failure.value)
    assert message in text
    assert leaks(text) == []


def test_every_mistake_gets_its_own_message():
    messages = set()
    for _, make_peft_model, _ in MISTAKES:
        with pytest.raises(AssertionError) as failure:
            check_peft_model(make_peft_model)
        messages.add(str(failure.value))
    assert len(messages) == len(MISTAKES)


def _probe_as_when_grading(make_peft_model, spec):
    """Probe with PEFT's DoRA layer replaced by the grading sandbox's stub; return the observation as JSON data."""
    with mock.patch.object(variants, "DoraLinearLayer", peft_dora_stub.DoraLinearLayer):
        obs = peft_model_probe(make_peft_model, spec)
    json.dumps(obs.facts)  # what crosses the sandbox's boundary is JSON
    return obs


@pytest.mark.parametrize(
    "make_peft_model", [reference_make_peft_model, _direct], ids=["reference", "peft-model-class"]
)
def test_without_pefts_dora_layer_an_honest_answer_still_passes(make_peft_model):
    spec = PeftModelSpec.make(seeds=[3])
    obs = _probe_as_when_grading(make_peft_model, spec)
    reached = obs.facts["seed3/use_dora=True/reached"]
    assert reached["wraps_given"] and reached["config"]["use_dora"] is True
    assert "seed3/use_dora=True/error" not in obs.facts and "seed3/use_dora=False/structure" in obs.facts
    assert "trainable parameters, as PEFT's own" in judge_peft_model(spec, obs)


@pytest.mark.parametrize(
    "make_peft_model, message",
    [
        (lambda m, u: get_peft_model(m, _config(u, r=4 if u else 8)), "Expected: r=8; got: r=4"),
        (lambda m, u: get_peft_model(copy.deepcopy(m) if u else m, _config(u)), "another model than the one"),
        (lambda m, u: get_peft_model(m, _config(u, task_type=None if u else TaskType.SEQ_CLS)), "head frozen"),
    ],
    ids=["dora-rank", "dora-wraps-a-copy", "dora-head-frozen"],
)
def test_without_pefts_dora_layer_a_dora_mistake_is_still_found(make_peft_model, message):
    spec = PeftModelSpec.make()
    with pytest.raises(AssertionError, match=message):
        judge_peft_model(spec, _probe_as_when_grading(make_peft_model, spec))
