"""analysis: ΔM/ΔD, merged weights against PEFT's merge_and_unload, Figure 2 statistics, devices, gradient statistics."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import Linear as PeftLoraLinear

from labhelpers import analysis, training
from labhelpers.errors import LabConfigError


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
    merged = analysis.linear_weights(copy.deepcopy(model).merge_and_unload(), targets=None)
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
    assert sorted(weights) == sorted(analysis.linear_weights(_tiny_bert()))


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


@pytest.mark.parametrize(
    "xs, ys",
    [([1, 2, 2, 3, 5], [2, 1, 4, 4, 9]), ([0.3, -1.0, 2.0, 0.5], [1.0, 1.0, -3.0, 2.0]), (list(range(8)), [x**3 for x in range(8)])],
    ids=["ties", "negative", "monotone"],
)  # fmt: skip
def test_spearman_and_slope_match_scipy(xs, ys):
    from scipy import stats

    assert analysis.spearman(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic, rel=1e-12)
    assert analysis.slope(xs, ys) == pytest.approx(stats.linregress(xs, ys).slope, rel=1e-12)


def test_within_group_correlation_removes_the_shared_trend():
    # Two checkpoints; inside each, ΔM falls as ΔD rises, but both grow from the first checkpoint to the second.
    xs = [1.0, 2.0, 3.0, 11.0, 12.0, 13.0]
    ys = [3.0, 2.0, 1.0, 13.0, 12.0, 11.0]
    groups = [1, 1, 1, 2, 2, 2]
    assert analysis.correlation(xs, ys) > 0.9
    assert analysis.within_group_correlation(xs, ys, groups) == pytest.approx(-1.0)
    x, y = np.array(xs), np.array(ys)
    for g in (1, 2):
        members = np.array(groups) == g
        x[members] -= x[members].mean()
        y[members] -= y[members].mean()
    assert analysis.within_group_correlation(xs, ys, groups) == pytest.approx(np.corrcoef(x, y)[0, 1])


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
    assert analysis.layer_and_target(name) == expected


def test_layer_and_target_reject_names_outside_layers():
    with pytest.raises(ValueError, match="encoder layer"):
        analysis.layer_and_target("classifier")


W0 = {
    f"bert.encoder.layer.{i}.attention.self.{t}": _random((5, 7), 10 * i + k).float()
    for i in range(3)
    for k, t in enumerate(("query", "value"))
}


def _comparison(methods=("full", "lora", "dora"), seeds=(0, 1, 2), checkpoints=4):
    """Records as run_comparison returns them, with weights that drift away from W0 differently per seed."""
    runs = []
    for m, method in enumerate(methods):
        for seed in seeds:
            generator = torch.Generator().manual_seed(100 * m + seed)
            noise = {k: torch.randn(v.shape, generator=generator) for k, v in W0.items()}
            scale = {k: 1 + 0.05 * torch.rand(v.shape[0], 1, generator=generator) for k, v in W0.items()}
            kept = []
            for k in range(1, checkpoints + 1):
                weights = {name: W * scale[name] ** k + 0.01 * k * noise[name] for name, W in W0.items()}
                kept.append(training.Checkpoint(step=5 * k, epoch=k / checkpoints, train_loss=0.5, decomposition={},
                                                weights=weights))  # fmt: skip
            runs.append(training.Run(method, seed, 1e-3, [0.8], [0.5], kept, 10, 100, 1.0, 1.0, None))
    return training.Comparison(
        settings=training.Settings(methods=methods, seeds=seeds, checkpoints=checkpoints), runs=runs, n_train=20,
        n_eval=10, device="cpu", model="test", torch_threads=1, pretrained=W0,
    )  # fmt: skip


def test_decomposition_trajectory_applies_the_given_measure_to_every_checkpoint_and_layer():
    comparison = _comparison(methods=("lora",), seeds=(3,), checkpoints=2)
    calls = []

    def measure(W0_, W_):
        calls.append((W0_.shape, W_.shape))
        return analysis.magnitude_direction_change(W0_, W_)

    trajectory = analysis.decomposition_trajectory(comparison, measure=measure)
    assert len(calls) == len(trajectory.points) == 2 * 6  # two checkpoints × six matrices
    first = trajectory.points[0]
    assert (first.method, first.seed, first.layer, first.target, first.checkpoint, first.step) == (
        "lora",
        3,
        0,
        "query",
        1,
        5,
    )
    assert [p.checkpoint for p in trajectory.points] == [1] * 6 + [2] * 6
    name = "bert.encoder.layer.2.attention.self.value"
    expected = analysis.magnitude_direction_change(W0[name], comparison.runs[0].checkpoints[1].weights[name])
    assert (trajectory.points[-1].delta_m, trajectory.points[-1].delta_d) == pytest.approx(expected)
    assert trajectory.targets == ["query", "value"] and trajectory.seeds("lora") == [3]


def test_decomposition_trajectory_explains_missing_weights():
    comparison = _comparison()
    comparison.runs[0].checkpoints[0].weights = {}
    with pytest.raises(ValueError, match="keep_weights=True"):
        analysis.decomposition_trajectory(comparison)


def test_figure2_json_lets_anyone_recompute_every_number(tmp_path):
    trajectory = analysis.decomposition_trajectory(_comparison())
    path = trajectory.write(tmp_path)
    saved = json.loads(path.read_text())
    assert path.name == "ex5_figure2.json" and saved["paper"]["correlation"] == {
        "full": -0.62,
        "lora": 0.83,
        "dora": -0.31,
    }
    assert set(saved["points"][0]) >= {"method", "seed", "target", "layer", "checkpoint", "delta_m", "delta_d"}
    assert len(saved["points"]) == 3 * 3 * 4 * 6  # methods × seeds × checkpoints × matrices
    for method in ("full", "lora", "dora"):
        for target in ("query", "value"):
            entry = saved["summary"][method][target]
            per_seed = []
            for seed in (0, 1, 2):
                rows = [p for p in saved["points"] if (p["method"], p["target"], p["seed"]) == (method, target, seed)]
                d, m = np.array([p["delta_d"] for p in rows]), np.array([p["delta_m"] for p in rows])
                r = np.corrcoef(d, m)[0, 1]
                per_seed.append(r)
                mine = next(e for e in entry["per_seed"] if e["seed"] == seed)
                assert mine["pearson"] == pytest.approx(r)
                assert mine["slope"] == pytest.approx(np.polyfit(d, m, 1)[0])
            assert entry["pearson"]["mean"] == pytest.approx(np.mean(per_seed))
            assert entry["pearson"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert entry["pearson"]["seeds"] == 3 and set(entry) == {*analysis.STATISTICS, "per_seed"}


def test_one_seed_has_no_spread_and_writes_null(tmp_path):
    trajectory = analysis.decomposition_trajectory(_comparison(seeds=(0,)))
    assert math.isnan(trajectory.spread("dora", "query", "pearson")[1])
    saved = json.loads(trajectory.write(tmp_path).read_text())
    assert saved["summary"]["dora"]["query"]["pearson"]["std"] is None


def _trajectory_with_signs(signs: dict[str, list[float]]):
    """A trajectory whose per-seed query correlation has the given signs (ΔM = sign · ΔD + small noise)."""
    points = []
    for method, seed_signs in signs.items():
        for seed, sign in enumerate(seed_signs):
            for layer in range(3):
                for checkpoint in (1, 2):
                    d = 0.01 * (layer + 1) * checkpoint + 0.001 * seed
                    points.append(analysis.DecompositionPoint(method, seed, "query", layer, checkpoint, checkpoint,
                                                              0.5 + sign * d, d))  # fmt: skip
    return analysis.Trajectory(points)


@pytest.mark.parametrize(
    "signs, expected",
    [
        ({"dora": [-1, -1, -1]}, "DoRA: Pearson -1.00 ± 0.00 over 3 seeds (per seed -1.00, -1.00, -1.00)"),
        ({"dora": [-1, -1, -1]}, "the paper's sign in every seed"),
        ({"dora": [1, 1, 1]}, "this does not reproduce the paper's sign (no seed does)"),
        ({"dora": [1, -1, 1]}, "the sign differs between seeds"),
        ({"full": [1, 1], "lora": [1, 1], "dora": [-1, -1]}, "-2.00, -2.00 (seed by seed); mean -2.00"),
        ({"full": [1, 1], "lora": [1, 1], "dora": [-1, -1]}, "no: LoRA's is closer, at this scale"),
        ({"full": [-1, -1], "lora": [1, 1], "dora": [-1, -1]}, "[+2.00, +2.00]: yes, at this scale"),
        ({"full": [1, -1], "lora": [1, 1], "dora": [-1, -1]}, "these seeds cannot tell"),
        ({"full": [-1], "lora": [1], "dora": [-1]}, "one seed: no spread, so no verdict"),
        (
            {"full": [-1], "lora": [1, 1], "dora": [-1, -1]},
            "+2.00, +2.00 (seed by seed; full FT ran seed 0 only: its mean r is used for seed 1); mean +2.00",
        ),
    ],
    ids=[
        "spread",
        "same-sign",
        "opposite-sign",
        "mixed-sign",
        "gaps",
        "not-closer",
        "closer",
        "cannot-tell",
        "one-seed",
        "one-full-seed",
    ],
)
def test_figure2_findings_say_what_was_measured(signs, expected):
    text = "\n".join(analysis.figure2_findings(_trajectory_with_signs(signs), labels=training.LABELS))
    assert expected in text


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (2, 4.303), (9, 2.262), (10, 2.228), (40, 2.228)])
def test_t_quantile_matches_scipy_or_bounds_it(df, quantile):
    from scipy import stats

    assert analysis.t_quantile_95(df) == quantile
    assert (
        stats.t.ppf(0.975, df) == pytest.approx(quantile, abs=5e-4) if df <= 10 else quantile > stats.t.ppf(0.975, df)
    )


def test_figure2_table_lists_every_method_and_target():
    table = analysis.decomposition_trajectory(_comparison()).table(training.LABELS)
    rows = [line.split()[0] for line in table.splitlines()[1:-1]]
    assert rows == ["query"] * 3 + ["value"] * 3 and "-0.62" in table


@pytest.mark.parametrize(
    "device, message",
    [("meta", "holds no data"), ("cuda:3", "GPU"), ("nonsense", "not a torch device")],
    ids=["meta", "missing-gpu", "unknown"],
)
def test_resolve_device_explains_unusable_devices(device, message):
    if device.startswith("cuda") and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(LabConfigError, match=message):
        analysis.resolve_device(device)


def test_resolve_device_accepts_cpu():
    assert analysis.resolve_device("cpu") == analysis.resolve_device(torch.device("cpu")) == torch.device("cpu")


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
        PeftDoRALinear, holder, layer="proj", steps=40, r=4, lora_alpha=8, lr=1e-2, device="cpu"
    )
    assert isinstance(stats, analysis.GradientStats) and stats.device == "cpu"
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
    stats = analysis.gradient_norms_during_training(PeftDoRALinear, model, steps=2, device="cpu")
    assert stats.shape == (1536, 384)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_norms_name_a_missing_layer():
    with pytest.raises(ValueError, match="no layer"):
        analysis.gradient_norms_during_training(
            PeftDoRALinear, nn.ModuleDict({"proj": nn.Linear(4, 3)}), layer="nope", steps=1
        )


def test_gradient_norms_refuse_a_device_without_data():
    with pytest.raises(LabConfigError, match="holds no data"):
        analysis.gradient_norms_during_training(
            PeftDoRALinear, nn.ModuleDict({"proj": nn.Linear(4, 3)}), layer="proj", steps=1, device="meta"
        )


def test_teacher_is_exactly_reachable_by_rank_8_dora_but_not_by_rank_8_lora():
    W0 = _random((40, 30), 7)
    teacher = analysis._teacher_weight(W0, rank=4, generator=torch.Generator().manual_seed(0))
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
