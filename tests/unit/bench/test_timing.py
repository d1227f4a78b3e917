"""labhelpers.bench.timing: what a timing returns, interleaving, ratios, dropout, device, clock and threads, and
leaving out unfinished layers."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from labhelpers import bench
from labhelpers.bench import timing
from labhelpers.errors import LabError
from tests.support.layer_cells import IN, OUT, TOKENS

ONE_ROUND = bench.BenchSettings(IN, OUT, TOKENS, repeats=1, warmup=0, threads=1, device="cpu")


class RecordingLinear(nn.Linear):
    """An nn.Linear that appends (name, device of x) to a shared list on every forward."""

    def __init__(self, name: str, calls: list):
        super().__init__(IN, OUT)
        self.name, self.calls = name, calls

    def forward(self, x):
        self.calls.append((self.name, x.device.type))
        return super().forward(x)


def test_results_have_one_entry_per_layer_with_settings(results):
    settings = results.settings
    assert list(results.layers) == ["lora", "peft_dora", "lab_dora", "lab_efficient"]
    assert (settings.in_features, settings.out_features, settings.tokens) == (IN, OUT, TOKENS)
    assert (settings.repeats, settings.warmup, settings.threads, results.baseline) == (4, 1, 1, "lora")
    assert (settings.r, settings.lora_alpha, results.lora_dropout, settings.device) == (2, 16.0, 0.1, "cpu")
    assert settings.clock == "wall"
    for name, row in results.layers.items():
        assert len(row.times_s) == 4, name
        assert all(t > 0 for t in row.times_s), name
        assert row.median_s == statistics.median(row.times_s), name
        # The step allocates at least its output and the input's gradient.
        assert row.peak_bytes >= TOKENS * (IN + OUT) * 4, name


def test_ratios_are_medians_over_the_lora_median(results):
    lora = results.layers["lora"].median_s
    assert results.layers["lora"].ratio == 1.0
    for row in results.layers.values():
        assert row.ratio == pytest.approx(row.median_s / lora)


def test_without_a_lora_entry_there_are_no_ratios():
    factories = {"plain": lambda: nn.Linear(IN, OUT)}
    results = bench.time_layers(factories, replace(ONE_ROUND, repeats=2))
    assert results.baseline is None
    assert results.layers["plain"].ratio is None


def test_rounds_interleave_the_layers_and_rotate_the_first():
    calls: list = []
    names = ["lora", "b", "c"]
    factories = {name: (lambda name=name: RecordingLinear(name, calls)) for name in names}
    results = bench.time_layers(factories, replace(ONE_ROUND, repeats=6, warmup=2))
    # Every training step runs the layer forward exactly once; the warmup rounds come first.
    timed_calls = [name for name, _ in calls[2 * len(names) : 2 * len(names) + 6 * len(names)]]
    assert results.schedule == timed_calls
    rounds = [timed_calls[i : i + len(names)] for i in range(0, len(timed_calls), len(names))]
    assert all(sorted(block) == sorted(names) for block in rounds), rounds
    assert {block[0] for block in rounds} == set(names), "the first layer of a round should rotate"


@pytest.mark.parametrize("lora_dropout", [0.0, 0.1], ids=["no_dropout", "lab_dropout"])
def test_every_layer_gets_the_same_base_weight_and_dropout(lab_layers, lora_dropout):
    """At init lora_B is zero, so every layer equals the shared base nn.Linear; each has the dropout asked for."""
    settings = bench.BenchSettings(IN, OUT, TOKENS, r=2, lora_dropout=lora_dropout, device="cpu")
    layers = {name: make() for name, make in bench.default_factories(settings, lab_layers).items()}
    x = torch.randn(TOKENS, IN)
    outputs = {name: layer.eval()(x) for name, layer in layers.items()}
    for name, y in outputs.items():
        assert y.shape == (TOKENS, OUT), name
        torch.testing.assert_close(y, outputs["lora"], msg=f"{name} differs from lora at init")
    dropouts = [layers[name].lora_dropout["default"] for name in ("lora", "peft_dora")]
    dropouts += [layers[name].lora_dropout for name in lab_layers]
    for module in dropouts:
        assert isinstance(module, nn.Dropout) == (lora_dropout > 0) and getattr(module, "p", 0.0) == lora_dropout


def test_the_base_layer_depends_on_the_seed_only():
    """The same seed gives the same base weight whatever the caller's random state; another seed another weight."""
    settings = bench.BenchSettings(IN, OUT, TOKENS, r=2, device="cpu")
    first = bench.default_factories(settings)["lora"]().base_layer.weight
    torch.manual_seed(123)
    again = bench.default_factories(settings)["lora"]().base_layer.weight
    other = bench.default_factories(replace(settings, seed=1))["lora"]().base_layer.weight
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_layers_and_inputs_are_on_the_configured_device(monkeypatch):
    """LAB_DEVICE decides where the layers live and the steps run (here the CPU, the one device every machine has)."""
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    calls: list = []
    factories = {"lora": lambda: RecordingLinear("lora", calls)}
    results = bench.time_layers(factories, replace(ONE_ROUND, repeats=2, device=None))
    assert results.settings.device == "cpu"
    assert {device for _, device in calls} == {"cpu"}
    layer = bench.default_factories(bench.BenchSettings(IN, OUT, TOKENS, r=2))["peft_dora"]()
    assert {p.device.type for p in layer.parameters()} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: CUDA is usable here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch, device):
    monkeypatch.setenv("LAB_DEVICE", device)
    with pytest.raises(LabError, match="LAB_DEVICE.*sees no GPU.*set LAB_DEVICE=cpu"):
        bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, replace(ONE_ROUND, device=None))
    with pytest.raises(LabError, match="sees no GPU"):
        bench.default_factories(bench.BenchSettings(IN, OUT, TOKENS))


def test_explicit_device_overrides_the_setting(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cuda")
    layer = bench.default_factories(bench.BenchSettings(IN, OUT, TOKENS, r=2, device="cpu"))["lora"]()
    assert {p.device for p in layer.parameters()} == {torch.device("cpu")}
    assert bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, ONE_ROUND).settings.device == "cpu"


def test_cpu_clock_times_the_process_cpu_time(monkeypatch):
    """clock="cpu" reads time.process_time around each step (and the wall clock is not read)."""
    readings = iter(range(1000))
    monkeypatch.setattr(timing, "CLOCKS", {"wall": None, "cpu": lambda: float(next(readings))})
    factories = {"lora": lambda: nn.Linear(IN, OUT)}
    results = bench.time_layers(factories, replace(ONE_ROUND, repeats=3, clock="cpu"))
    assert results.settings.clock == "cpu" and results.layers["lora"].times_s == [1.0, 1.0, 1.0]


def test_unknown_clock_says_what_is_wrong():
    with pytest.raises(LabError, match="clock='gpu': use one of wall, cpu"):
        bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, replace(ONE_ROUND, clock="gpu"))


def test_cpu_clock_off_the_cpu_says_what_is_wrong(monkeypatch):
    """On a GPU (here one the device check is told it found), the CPU's clock would miss the work: refused."""
    monkeypatch.setattr(timing, "resolve_device", lambda device: torch.device("cuda"))
    with pytest.raises(LabError, match="counts the CPU's work only"):
        bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, replace(ONE_ROUND, clock="cpu"))


@pytest.mark.parametrize(
    "factories, change, message",
    [
        ({}, {}, "time_layers got no layers"),
        ({"lora": lambda: nn.Linear(IN, OUT)}, {"repeats": 0}, "repeats=0, warmup=0: time at least one round"),
        ({"lora": lambda: nn.Linear(IN, OUT)}, {"warmup": -1}, "repeats=1, warmup=-1: time at least one round"),
    ],
    ids=["no_layers", "no_rounds", "negative_warmup"],
)
def test_settings_that_time_nothing_say_what_is_wrong(factories, change, message):
    with pytest.raises(LabError, match=message):
        bench.time_layers(factories, replace(ONE_ROUND, **change))


@pytest.mark.parametrize("threads", [1, 2], ids=["one_thread", "two_threads"])
def test_thread_count_is_restored(threads, three_threads):
    before = three_threads
    bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, replace(ONE_ROUND, threads=threads))
    assert torch.get_num_threads() == before


class Unfinished(nn.Module):
    """The release's stub: __init__ not written yet."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        raise NotImplementedError()


class UnfinishedForward(nn.Linear):
    """A bonus stub: the constructor works (inherited), forward is not written yet."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer.in_features, base_layer.out_features)

    def forward(self, x):
        raise NotImplementedError()


class Broken(UnfinishedForward):
    """A layer with a bug: a shape error in forward."""

    def forward(self, x):
        return x @ self.weight


class Working(UnfinishedForward):
    def forward(self, x):
        return super(UnfinishedForward, self).forward(x)


@pytest.mark.parametrize(
    "cls, note",
    [
        (Working, None),
        (Unfinished, "Unfinished is not implemented yet: it is left out of the timing."),
        (UnfinishedForward, "UnfinishedForward is not implemented yet: it is left out of the timing."),
        (Broken, "Broken failed on a small input (RuntimeError: "),
    ],
    ids=["working", "unfinished_init", "unfinished_forward", "broken"],
)
def test_implemented_layers_leaves_out_unfinished_ones_and_says_why(cls, note):
    state = torch.random.get_rng_state()
    usable, notes = bench.implemented_layers({"lab": cls})
    assert torch.equal(torch.random.get_rng_state(), state), "trying a layer must not move the notebook's RNG"
    if note is None:
        assert usable == {"lab": cls} and notes == []
    else:
        assert usable == {} and len(notes) == 1 and notes[0].startswith(note), notes
