"""analysis: the paper's ΔM/ΔD, merged weights against PEFT's merge_and_unload, trajectories, gradient statistics."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import Linear as PeftLoraLinear

from labhelpers import analysis


def _loop_measure(W0: torch.Tensor, W: torch.Tensor) -> tuple[float, float]:
    """ΔM and ΔD written out row by row in plain Python (paper §3.2), independent of the code under test."""
    dm = dd = 0.0
    for w0, w in zip(W0.double().tolist(), W.double().tolist()):
        n0 = math.sqrt(sum(a * a for a in w0))
        n = math.sqrt(sum(b * b for b in w))
        dm += abs(n - n0)
        dd += 1 - sum(a * b for a, b in zip(w0, w)) / (n0 * n)
    return dm / len(W0), dd / len(W0)


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("shape", [(7, 19), (40, 3), (1, 5)], ids=["wide", "tall", "one-row"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_magnitude_direction_change_matches_row_by_row_definition(shape, dtype):
    W0 = _random(shape, 0)
    W = W0 + 0.3 * _random(shape, 1)
    delta_m, delta_d = analysis.magnitude_direction_change(W0.to(dtype), W.to(dtype))
    expected_m, expected_d = _loop_measure(W0.to(dtype), W.to(dtype))
    assert isinstance(delta_m, float) and isinstance(delta_d, float)
    assert delta_m == pytest.approx(expected_m, rel=1e-9)
    assert delta_d == pytest.approx(expected_d, rel=1e-9)


@pytest.mark.parametrize(
    "change, expect_m_zero, expect_d_zero",
    [
        ("row scaling", False, True),
        ("norm-preserving turn", True, False),
        ("none", True, True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_magnitude_direction_change_separates_length_and_direction(change, expect_m_zero, expect_d_zero):
    W0 = _random((9, 14), 2)
    norms = torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    if change == "row scaling":
        W = W0 * torch.linspace(0.5, 2.0, 9, dtype=W0.dtype)[:, None]
    elif change == "norm-preserving turn":
        turned = W0 + _random((9, 14), 3)
        W = turned / torch.linalg.vector_norm(turned, dim=1, keepdim=True) * norms
    else:
        W = W0.clone()
    delta_m, delta_d = analysis.magnitude_direction_change(W0, W)
    assert (abs(delta_m) < 1e-12) == expect_m_zero
    assert (abs(delta_d) < 1e-12) == expect_d_zero


def test_magnitude_direction_change_uses_rows_not_columns():
    W0 = _random((6, 11), 4)
    W = W0 * torch.linspace(0.5, 2.0, 6, dtype=W0.dtype)[:, None]  # pure per-row scaling: no direction change
    assert analysis.magnitude_direction_change(W0, W)[1] == pytest.approx(0, abs=1e-12)
    assert analysis.magnitude_direction_change(W0.T, W.T)[1] > 1e-3


def _tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                        max_position_embeddings=16, num_labels=2)  # fmt: skip
    return BertForSequenceClassification(config).eval()


def _trained_peft_model(use_dora: bool, targets=("query", "value")):
    """A PEFT model whose adapters hold random non-zero values, as after training."""
    model = get_peft_model(
        _tiny_bert(),
        LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=list(targets), use_dora=use_dora),
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "magnitude" in name:
                parameter.mul_(1 + 0.2 * torch.rand(parameter.shape, generator=generator))
            elif "lora_" in name:
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_merged_weights_equal_peft_merge_and_unload(use_dora):
    # "dense" adapts the non-square feed-forward layers (24×16, 16×24) besides query/value (16×16).
    model = _trained_peft_model(use_dora, targets=("query", "value", "dense"))
    weights = analysis.merged_weights(model, targets=None)
    merged = analysis.pretrained_weights(copy.deepcopy(model).merge_and_unload(), targets=None)
    assert set(weights) == {name for name in merged if name.endswith(("query", "value", "dense"))}
    assert any(W.shape[0] != W.shape[1] for W in weights.values())
    for name, W in weights.items():
        torch.testing.assert_close(W, merged[name], rtol=1e-5, atol=1e-6)
    # Nothing was merged into the model itself.
    assert not any(getattr(m, "merged", False) for m in model.modules())


def test_merged_weights_of_dora_have_the_learned_magnitudes():
    model = _trained_peft_model(use_dora=True)
    weights = analysis.merged_weights(model)
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    magnitude = layer.lora_magnitude_vector["default"].weight.detach()
    torch.testing.assert_close(
        torch.linalg.vector_norm(weights["bert.encoder.layer.0.attention.self.query"], dim=1), magnitude
    )
    assert sorted(weights) == sorted(analysis.pretrained_weights(_tiny_bert()))


@pytest.mark.parametrize(
    "xs, ys",
    [
        ([1, 2, 3, 4], [2, 4, 5, 9]),
        ([0.1, -0.2, 0.5], [-1.0, 0.3, -2.0]),
        (list(range(10)), [x**2 for x in range(10)]),
    ],
    ids=["positive", "negative", "curved"],
)
def test_correlation_is_pearsons(xs, ys):
    assert analysis.correlation(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-12)


@pytest.mark.parametrize("xs, ys", [([1, 1, 1], [1, 2, 3]), ([1], [2])], ids=["constant", "single-point"])
def test_correlation_is_nan_without_spread(xs, ys):
    assert math.isnan(analysis.correlation(xs, ys))


def test_decomposition_trajectory_applies_the_given_measure_to_every_checkpoint_and_layer():
    W0 = {"a.query": _random((4, 6), 0).float(), "a.value": _random((3, 6), 1).float()}
    checkpoints = [
        {"step": 0, "epoch": 0.0, "weights": {k: v.clone() for k, v in W0.items()}},
        *(
            {"step": s, "epoch": s / 10, "weights": {k: v * (1 + 0.1 * s) + 0.01 * s for k, v in W0.items()}}
            for s in (5, 10)
        ),
    ]
    results = {"weights": {"pretrained": W0, "checkpoints": {"lora": {"seed": 3, "checkpoints": checkpoints}}}}
    calls = []

    def measure(W0_, W_):
        calls.append((W0_.shape, W_.shape))
        return analysis.magnitude_direction_change(W0_, W_)

    trajectory = analysis.decomposition_trajectory(results, measure=measure)
    rows = trajectory["lora"]
    assert len(calls) == 4  # step 0 is left out: two checkpoints × two layers
    assert rows["step"] == [5, 5, 10, 10] and rows["layer"] == ["a.query", "a.value"] * 2
    assert rows["seed"] == 3
    expected = [analysis.magnitude_direction_change(W0[l], c["weights"][l]) for c in checkpoints[1:] for l in W0]
    assert rows["delta_m"] == pytest.approx([m for m, _ in expected])
    assert rows["correlation"] == pytest.approx(np.corrcoef(rows["delta_d"], rows["delta_m"])[0, 1])


def test_decomposition_trajectory_explains_missing_weights():
    with pytest.raises(ValueError, match="run_comparison"):
        analysis.decomposition_trajectory({"config": {}, "runs": []})


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
    stats = analysis.gradient_norms_during_training(
        PeftDoRALinear, holder, layer="proj", steps=40, r=4, lora_alpha=8, lr=1e-2
    )
    assert stats["shape"] == (12, 20) and stats["steps"] == list(range(40))
    for method in ("lora", "dora"):
        history = stats[method]
        assert all(len(values) == 40 for values in history.values())
        # lora_B = 0 at step 0, so dL/dA = s·Bᵀ(...) vanishes exactly; afterwards it does not.
        assert history["lora_A"][0] == 0.0 and min(history["lora_A"][1:]) > 0
        assert history["lora_B"][0] > 0
        assert np.mean(history["loss"][-5:]) < 0.5 * history["loss"][0]
    assert "magnitude" not in stats["lora"] and min(stats["dora"]["magnitude"]) > 0
    # Same start, same batches: identical loss at step 0.
    assert stats["lora"]["loss"][0] == pytest.approx(stats["dora"]["loss"][0], rel=1e-6)


def test_gradient_norms_default_layer_is_a_non_square_minilm_projection(base_model_and_tokenizer):
    model, _ = base_model_and_tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = analysis.gradient_norms_during_training(PeftDoRALinear, model, steps=2)
    assert stats["shape"] == (1536, 384)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_norms_name_a_missing_layer():
    with pytest.raises(ValueError, match="no layer"):
        analysis.gradient_norms_during_training(
            PeftDoRALinear, nn.ModuleDict({"proj": nn.Linear(4, 3)}), layer="nope", steps=1
        )
