"""weights: ΔM/ΔD against a row-by-row definition, per-row turn and excess, the null update, merged weights against
PEFT's merge_and_unload, module names."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from labhelpers.stats import spearman
from labhelpers.weights import (
    layer_and_target,
    linear_weights,
    magnitude_direction_change,
    merged_weights,
    random_update_like,
    row_changes,
)


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
    delta_m, delta_d = magnitude_direction_change(W0.to(dtype), W.to(dtype))
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
    delta_m, delta_d = magnitude_direction_change(W0, W)
    assert (abs(delta_m) < 1e-12) == expect_m_zero
    assert (abs(delta_d) < 1e-12) == expect_d_zero


def test_magnitude_direction_change_uses_rows_not_columns():
    W0 = _random((6, 11), 4)
    W = W0 * torch.linspace(0.5, 2.0, 6, dtype=W0.dtype)[:, None]  # pure per-row scaling: no direction change
    assert magnitude_direction_change(W0, W)[1] == pytest.approx(0, abs=1e-12)
    assert magnitude_direction_change(W0.T, W.T)[1] > 1e-3


def _orthogonal_to_rows(W0: torch.Tensor, seed: int) -> torch.Tensor:
    """A random update whose every row is orthogonal to the same row of W0."""
    update = _random(W0.shape, seed)
    unit = W0 / torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    return update - (update * unit).sum(dim=1, keepdim=True) * unit


def test_excess_magnitude_is_zero_for_an_update_orthogonal_to_every_row():
    W0 = _random((9, 14), 5)
    one_minus_cos, excess = row_changes(W0, W0 + 0.3 * _orthogonal_to_rows(W0, 6))
    assert (one_minus_cos > 1e-3).all()  # the rows turned (and grew to ||W0_i|| / cos_i) …
    torch.testing.assert_close(excess, torch.zeros(9, dtype=torch.float64), rtol=0, atol=1e-12)  # … and no more


def test_excess_magnitude_is_the_along_row_part_over_cos():
    W0 = _random((9, 14), 7)
    unit = W0 / torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    along = torch.linspace(-0.4, 0.6, 9, dtype=torch.float64)
    W = W0 + along[:, None] * unit + 0.3 * _orthogonal_to_rows(W0, 8)
    one_minus_cos, excess = row_changes(W0, W)
    cos = torch.nn.functional.cosine_similarity(W, W0, dim=1)
    torch.testing.assert_close(one_minus_cos, 1 - cos)
    torch.testing.assert_close(excess, along / cos)


@pytest.mark.parametrize(
    "change, low, high",
    [("random added update", -0.15, 0.15), ("turn keeping each row's length", -1.0, -0.95)],
    ids=["added", "length-keeping"],
)
def test_excess_magnitude_rank_correlation_has_the_reference_points_of_its_definition(change, low, high):
    W0 = _random((384, 64), 12) * torch.linspace(0.5, 2.0, 384, dtype=torch.float64)[:, None]
    W = W0 + 0.05 * _random((384, 64), 13)
    if change == "turn keeping each row's length":
        W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True) * torch.linalg.vector_norm(W0, dim=1, keepdim=True)
    one_minus_cos, excess = row_changes(W0, W)
    assert low <= spearman(one_minus_cos.tolist(), excess.tolist()) <= high


@pytest.mark.parametrize("rank, expected_rank", [(1, 1), (3, 3), (None, 9)], ids=["rank-1", "rank-3", "dense"])
@pytest.mark.parametrize("delta_d", [1e-6, 4e-4, 3e-2])
def test_null_update_has_the_requested_direction_change_and_rank(rank, expected_rank, delta_d):
    W0 = _random((9, 14), 9).float().double()  # a float32 weight, as the checkpoints keep them
    update = random_update_like(W0.float(), delta_d, rank, seed=3)
    assert update.dtype == torch.float64 and update.shape == W0.shape
    assert magnitude_direction_change(W0, W0 + update)[1] == pytest.approx(delta_d, rel=1e-8)
    assert torch.linalg.matrix_rank(update).item() == expected_rank


def test_null_update_is_seeded_and_leaves_the_callers_generators_alone():
    W0 = _random((9, 14), 10)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = random_update_like(W0, 1e-3, 2, seed=4)
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.equal(random_update_like(W0, 1e-3, 2, seed=4), first)
    assert not torch.equal(random_update_like(W0, 1e-3, 2, seed=5), first)


def test_null_update_of_zero_change_is_zero_and_an_unreachable_change_is_refused():
    W0 = _random((9, 14), 11)
    assert not random_update_like(W0, 0.0, 2, seed=0).any()
    with pytest.raises(ValueError, match="cannot be reached"):
        random_update_like(W0, 1.5, 2, seed=0)  # a random update can turn rows by about 90° on average, not more


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
    weights = merged_weights(model, targets=None)
    merged = linear_weights(copy.deepcopy(model).merge_and_unload(), targets=None)
    assert set(weights) == {name for name in merged if name.endswith(("query", "value", "dense"))}
    assert any(W.shape[0] != W.shape[1] for W in weights.values())
    for name, W in weights.items():
        torch.testing.assert_close(W, merged[name], rtol=1e-5, atol=1e-6)
    # Nothing was merged into the model itself.
    assert not any(getattr(m, "merged", False) for m in model.modules())


def test_merged_weights_of_dora_have_the_learned_magnitudes():
    model = _trained_peft_model(use_dora=True)
    weights = merged_weights(model)
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    magnitude = layer.lora_magnitude_vector["default"].weight.detach()
    torch.testing.assert_close(
        torch.linalg.vector_norm(weights["bert.encoder.layer.0.attention.self.query"], dim=1), magnitude
    )
    assert sorted(weights) == sorted(linear_weights(_tiny_bert()))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bert.encoder.layer.3.attention.self.query", (3, "query")),
        ("base_model.model.bert.encoder.layer.11.attention.self.value", (11, "value")),
        ("encoder.layer.0.dense", (0, "dense")),
    ],
    ids=["bert-query", "peft-prefix-value", "short"],
)
def test_layer_and_target_are_read_from_module_names(name, expected):
    assert layer_and_target(name) == expected


def test_layer_and_target_reject_names_outside_layers():
    with pytest.raises(ValueError, match="encoder layer"):
        layer_and_target("classifier")
