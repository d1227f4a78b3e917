"""gradients: Exercise 3's run trains both layers for real, leaves the model and the caller's random state alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from peft import LoraConfig
from peft.tuners.lora import Linear as PeftLoraLinear

from labhelpers import gradients
from labhelpers.errors import LabConfigError
from labhelpers.gradients import GradientRunSettings


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class PeftDoRALinear(nn.Module):
    """PEFT's DoRA layer behind the lab's DoRALinear interface (lora_A, lora_B, magnitude attributes)."""

    def __init__(self, base_layer: nn.Linear, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=True)
        self.inner = PeftLoraLinear(base_layer, "default", config, r=r, lora_alpha=lora_alpha)

    lora_A = property(lambda self: self.inner.lora_A["default"].weight)
    lora_B = property(lambda self: self.inner.lora_B["default"].weight)
    magnitude = property(lambda self: self.inner.lora_magnitude_vector["default"].weight)

    def forward(self, x):
        return self.inner(x)


def test_gradient_norms_follow_a_real_training_run():
    holder = nn.ModuleDict({"proj": nn.Linear(20, 12)})  # non-square (out 12, in 20)
    settings = GradientRunSettings(layer="proj", steps=40, r=4, lora_alpha=8, lr=1e-2)
    stats = gradients.gradient_norms_during_training(PeftDoRALinear, holder, settings, device="cpu")
    assert isinstance(stats, gradients.GradientStats) and stats.device == "cpu"
    assert stats.shape == (12, 20) and stats.steps == list(range(40))
    for method in ("lora", "dora"):
        history = getattr(stats, method)
        assert all(len(values) == 40 for values in history.values())
        # lora_B = 0 at step 0, so dL/dA = s·Bᵀ(...) vanishes exactly; afterwards it does not.
        assert history["lora_A"][0] == 0.0 and min(history["lora_A"][1:]) > 0
        assert history["lora_B"][0] > 0
        assert np.mean(history["loss"][-5:]) < 0.5 * history["loss"][0]
    assert "magnitude" not in stats.lora and min(stats.dora["magnitude"]) > 0
    # Same start, same batches: identical loss at step 0.
    assert stats.lora["loss"][0] == pytest.approx(stats.dora["loss"][0], rel=1e-6)
    assert json.loads(json.dumps(stats.to_json()))["lora"]["loss"] == stats.lora["loss"]


def test_gradient_norms_default_layer_is_a_non_square_minilm_projection(base_model_and_tokenizer):
    model, _ = base_model_and_tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = gradients.gradient_norms_during_training(PeftDoRALinear, model, GradientRunSettings(steps=2), device="cpu")
    assert stats.shape == (1536, 384)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_norms_name_a_missing_layer():
    with pytest.raises(ValueError, match="no layer"):
        gradients.gradient_norms_during_training(
            PeftDoRALinear, nn.ModuleDict({"proj": nn.Linear(4, 3)}), GradientRunSettings(layer="nope", steps=1)
        )


def test_gradient_norms_refuse_a_device_without_data():
    with pytest.raises(LabConfigError, match="holds no data"):
        gradients.gradient_norms_during_training(
            PeftDoRALinear, nn.ModuleDict({"proj": nn.Linear(4, 3)}), GradientRunSettings(layer="proj", steps=1),
            device="meta",
        )  # fmt: skip


def test_teacher_is_exactly_reachable_by_rank_8_dora_but_not_by_rank_8_lora():
    W0 = _random((40, 30), 7)
    teacher = gradients._teacher_weight(W0, rank=4, generator=torch.Generator().manual_seed(0))
    # Replay the teacher's draws: its rows point along W0 + 0.3·||W0_i||·U V (a rank-4 change) with new lengths.
    generator = torch.Generator().manual_seed(0)
    U = torch.randn(40, 4, generator=generator, dtype=W0.dtype) / 2
    V = torch.randn(4, 30, generator=generator, dtype=W0.dtype) / math.sqrt(30)
    B = torch.zeros(40, 8, dtype=W0.dtype)
    A = torch.zeros(8, 30, dtype=W0.dtype)
    B[:, :4] = 0.3 * torch.linalg.vector_norm(W0, dim=1, keepdim=True) * U
    A[:4] = V
    # DoRA (paper Eq. 5) with rank 8, scaling 1 and magnitude = the teacher's row norms reproduces it exactly.
    direction = W0 + B @ A
    dora = (
        torch.linalg.vector_norm(teacher, dim=1, keepdim=True)
        * direction
        / torch.linalg.vector_norm(direction, dim=1, keepdim=True)
    )
    torch.testing.assert_close(dora, teacher, rtol=1e-12, atol=1e-12)
    # LoRA needs teacher - W0 = B A, but that difference is full rank (30 > 8): the per-row rescaling (D - I) W0.
    singular = torch.linalg.svdvals(teacher - W0)
    assert int((singular > 1e-8 * singular[0]).sum()) == 30


def test_gradient_run_draws_from_its_own_random_state():
    holder = nn.ModuleDict({"proj": nn.Linear(20, 12)})
    settings = GradientRunSettings(layer="proj", steps=3, r=4, lora_alpha=8)
    torch.manual_seed(123)
    first = gradients.gradient_norms_during_training(PeftDoRALinear, holder, settings, device="cpu")
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # the caller's stream is where it was
    torch.manual_seed(7)
    again = gradients.gradient_norms_during_training(PeftDoRALinear, holder, settings, device="cpu")
    assert again.to_json() == first.to_json()  # seeded by settings.seed alone, whatever the caller's state
