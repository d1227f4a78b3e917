"""labhelpers.bench: structure of the timing results, interleaving, ratios, dropout, device, JSON, loading the lab's
layers from a notebook, and leaving out unfinished ones.

Tiny non-square layers and few rounds: these tests check what the harness returns, never how fast anything is.
"""

from __future__ import annotations

import json
import statistics

import nbformat
import pytest
import torch
import torch.nn as nn

from labhelpers import bench
from labhelpers.errors import LabError

IN, OUT, TOKENS = 12, 20, 6  # non-square: weight (OUT, IN)

# A correct DoRA layer written as PEFT's formula, in the cell layout of the solutions notebook.
DORA_CELL = """\
class DoRALinear(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = r
        ### BEGIN SOLUTION
        self.scaling = lora_alpha / r
        self.weight = nn.Parameter(base_layer.weight.detach(), requires_grad=False)
        self.bias = None if base_layer.bias is None else nn.Parameter(base_layer.bias.detach(), requires_grad=False)
        self.magnitude = nn.Parameter(torch.linalg.vector_norm(self.weight, dim=1, keepdim=True))
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features) / 10)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return F.linear(x, self.magnitude * V / torch.linalg.vector_norm(V, dim=1, keepdim=True).detach(), self.bias)
        ### END SOLUTION
"""

# A later cell that builds on the class above, as the bonus's EfficientDoRALinear does.
EFFICIENT_CELL = """\
class EfficientDoRALinear(DoRALinear):
    def forward(self, x):
        ### BEGIN SOLUTION
        return super().forward(x)
        ### END SOLUTION
"""

RELEASED_CELL = """\
class DoRALinear(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()
"""

LAB_CLASSES = ["DoRALinear", "EfficientDoRALinear"]


def write_notebook(path, *class_cells: str):
    """Write a notebook shaped like the lab's: a markdown cell, a setup cell that must not run, the class cells."""
    cells = [
        nbformat.v4.new_markdown_cell("## Exercise 2: Full DoRA Layer Implementation"),
        nbformat.v4.new_code_cell("raise RuntimeError('the setup cell must not run when loading a class')"),
    ]
    cells += [nbformat.v4.new_code_cell(cell) for cell in class_cells]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


class RecordingLinear(nn.Linear):
    """An nn.Linear that appends (name, device of x) to a shared list on every forward."""

    def __init__(self, name: str, calls: list):
        super().__init__(IN, OUT)
        self.name, self.calls = name, calls

    def forward(self, x):
        self.calls.append((self.name, x.device.type))
        return super().forward(x)


@pytest.fixture(scope="module")
def dora_notebook(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("nb") / "dora_lab.ipynb", DORA_CELL, EFFICIENT_CELL)


@pytest.fixture(scope="module")
def lab_layers(dora_notebook):
    classes = bench.load_classes(dora_notebook, LAB_CLASSES)
    return {"lab_dora": classes["DoRALinear"], "lab_efficient": classes["EfficientDoRALinear"]}


@pytest.fixture(scope="module")
def results(lab_layers):
    """One small run of the four layers the lab compares, with the lab's dropout."""
    return bench.compare(
        IN, OUT, TOKENS, lora_dropout=0.1, lab_layers=lab_layers, r=2, repeats=4, warmup=1, threads=1, device="cpu"
    )


def test_results_have_one_entry_per_layer_with_settings(results):
    assert list(results["layers"]) == ["lora", "peft_dora", "lab_dora", "lab_efficient"]
    assert (results["in_features"], results["out_features"], results["tokens"]) == (IN, OUT, TOKENS)
    assert (results["repeats"], results["warmup"], results["threads"], results["baseline"]) == (4, 1, 1, "lora")
    assert (results["r"], results["lora_alpha"], results["lora_dropout"], results["device"]) == (2, 16.0, 0.1, "cpu")
    assert results["clock"] == "wall"
    for name, row in results["layers"].items():
        assert len(row["times_s"]) == 4, name
        assert all(t > 0 for t in row["times_s"]), name
        assert row["median_s"] == statistics.median(row["times_s"]), name
        # The step allocates at least its output and the input's gradient.
        assert row["peak_bytes"] >= TOKENS * (IN + OUT) * 4, name


def test_ratios_are_medians_over_the_lora_median(results):
    lora = results["layers"]["lora"]["median_s"]
    assert results["layers"]["lora"]["ratio"] == 1.0
    for row in results["layers"].values():
        assert row["ratio"] == pytest.approx(row["median_s"] / lora)


def test_without_a_lora_entry_there_are_no_ratios():
    factories = {"plain": lambda: nn.Linear(IN, OUT)}
    results = bench.time_layers(factories, IN, OUT, TOKENS, repeats=2, warmup=0, threads=1, device="cpu")
    assert results["baseline"] is None
    assert results["layers"]["plain"]["ratio"] is None


def test_rounds_interleave_the_layers_and_rotate_the_first():
    calls: list = []
    names = ["lora", "b", "c"]
    factories = {name: (lambda name=name: RecordingLinear(name, calls)) for name in names}
    results = bench.time_layers(factories, IN, OUT, TOKENS, repeats=6, warmup=2, threads=1, device="cpu")
    # Every training step runs the layer forward exactly once; the warmup rounds come first.
    timed_calls = [name for name, _ in calls[2 * len(names) : 2 * len(names) + 6 * len(names)]]
    assert results["schedule"] == timed_calls
    rounds = [timed_calls[i : i + len(names)] for i in range(0, len(timed_calls), len(names))]
    assert all(sorted(block) == sorted(names) for block in rounds), rounds
    assert {block[0] for block in rounds} == set(names), "the first layer of a round should rotate"


@pytest.mark.parametrize("lora_dropout", [0.0, 0.1], ids=["no_dropout", "lab_dropout"])
def test_every_layer_gets_the_same_base_weight_and_dropout(lab_layers, lora_dropout):
    """At init lora_B is zero, so every layer equals the shared base nn.Linear; each has the dropout asked for."""
    factories = bench.default_factories(IN, OUT, r=2, lora_dropout=lora_dropout, lab_layers=lab_layers, device="cpu")
    layers = {name: make() for name, make in factories.items()}
    x = torch.randn(TOKENS, IN)
    outputs = {name: layer.eval()(x) for name, layer in layers.items()}
    for name, y in outputs.items():
        assert y.shape == (TOKENS, OUT), name
        torch.testing.assert_close(y, outputs["lora"], msg=f"{name} differs from lora at init")
    dropouts = [layers[name].lora_dropout["default"] for name in ("lora", "peft_dora")]
    dropouts += [layers[name].lora_dropout for name in lab_layers]
    for module in dropouts:
        assert isinstance(module, nn.Dropout) == (lora_dropout > 0) and getattr(module, "p", 0.0) == lora_dropout


def test_layers_and_inputs_are_on_the_configured_device(monkeypatch):
    """LAB_DEVICE decides where the layers live and the steps run (here the CPU, the one device every machine has)."""
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    calls: list = []
    factories = {"lora": lambda: RecordingLinear("lora", calls)}
    results = bench.time_layers(factories, IN, OUT, TOKENS, repeats=2, warmup=0, threads=1)
    assert results["device"] == "cpu"
    assert {device for _, device in calls} == {"cpu"}
    layer = bench.default_factories(IN, OUT, r=2)["peft_dora"]()
    assert {p.device.type for p in layer.parameters()} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: CUDA is usable here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch, device):
    monkeypatch.setenv("LAB_DEVICE", device)
    with pytest.raises(LabError, match="LAB_DEVICE.*sees no CUDA GPU: set LAB_DEVICE=cpu"):
        bench.resolve_device()
    with pytest.raises(LabError, match="sees no CUDA GPU"):
        bench.default_factories(IN, OUT)


def test_explicit_device_overrides_the_setting(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cuda")
    assert bench.resolve_device("cpu") == torch.device("cpu")


def test_cpu_clock_times_the_process_cpu_time(monkeypatch):
    """clock="cpu" reads time.process_time around each step (and the wall clock is not read)."""
    readings = iter(range(1000))
    monkeypatch.setattr(bench, "CLOCKS", {"wall": None, "cpu": lambda: float(next(readings))})
    factories = {"lora": lambda: nn.Linear(IN, OUT)}
    results = bench.time_layers(factories, IN, OUT, TOKENS, 3, 0, 1, device="cpu", clock="cpu")
    assert results["clock"] == "cpu" and results["layers"]["lora"]["times_s"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "device, clock, message",
    [("cpu", "gpu", "clock='gpu': use one of wall, cpu"), ("meta", "cpu", "counts the CPU's work only")],
    ids=["unknown_clock", "cpu_clock_off_the_cpu"],
)
def test_clock_says_what_is_wrong(device, clock, message):
    with pytest.raises(LabError, match=message):
        bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, IN, OUT, TOKENS, device=device, clock=clock)


@pytest.mark.parametrize("threads", [1, 2], ids=["one_thread", "two_threads"])
def test_thread_count_is_restored(threads):
    before = torch.get_num_threads()
    bench.time_layers(
        {"lora": lambda: nn.Linear(IN, OUT)}, IN, OUT, TOKENS, repeats=1, warmup=0, threads=threads, device="cpu"
    )
    assert torch.get_num_threads() == before


def test_peak_memory_grows_with_tokens():
    layer = nn.Linear(IN, OUT)
    small, large = (
        bench.peak_step_bytes(layer, torch.randn(n, IN, requires_grad=True), torch.randn(n, OUT)) for n in (64, 256)
    )
    # The output (tokens, OUT) and the input gradient (tokens, IN) are float32 and live at the same time.
    assert large >= 256 * (IN + OUT) * 4
    assert large > small


def test_format_table_has_a_row_per_layer_and_setting(results):
    header, rule, *rows = bench.format_table([results]).splitlines()
    assert "median ms" in header and "dropout" in header and set(rule) == {"-"}
    assert len(rows) == len(results["layers"])
    for line, (name, row) in zip(rows, results["layers"].items()):
        assert line.split()[:4] == [f"{OUT}x{IN}", str(TOKENS), "0.1", name], line
        assert f"{row['ratio']:.3f}" in line, line


@pytest.mark.parametrize("clock, effect", [("wall", "the ratios are inflated"), ("cpu", "inflates far less")])
def test_load_note_gives_the_load_range_and_its_effect(results, clock, effect):
    note = bench.load_note([{**results, "clock": clock}])
    low, high = min(results["load_average"]), max(results["load_average"])
    assert f"{low:.1f} to {high:.1f}" in note and "cores" in note and effect in note


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


@pytest.mark.parametrize(
    "source, suffix",
    [
        ((DORA_CELL, EFFICIENT_CELL), ".ipynb"),
        (
            ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n" + DORA_CELL + EFFICIENT_CELL,),
            ".py",
        ),
    ],
    ids=["notebook_cells", "python_file"],
)
def test_load_classes_runs_only_the_class_code(tmp_path, source, suffix):
    path = tmp_path / f"solution{suffix}"
    if suffix == ".ipynb":
        write_notebook(path, *source)
    else:
        path.write_text(source[0])
    classes = bench.load_classes(path, LAB_CLASSES)
    assert issubclass(classes["EfficientDoRALinear"], classes["DoRALinear"])
    base = nn.Linear(IN, OUT)
    for cls in classes.values():
        layer = cls(base, r=2, lora_alpha=4.0)
        x = torch.randn(3, 5, IN)  # 3-D input
        torch.testing.assert_close(layer(x), base(x))
        assert layer.magnitude.shape == (OUT, 1)


def test_load_classes_takes_the_last_definition(tmp_path):
    path = write_notebook(tmp_path / "dora_lab.ipynb", RELEASED_CELL, DORA_CELL)
    layer = bench.load_classes(path)["DoRALinear"](nn.Linear(IN, OUT), r=2)
    assert layer.lora_A.shape == (2, IN)


@pytest.mark.parametrize(
    "class_cells, expected",
    [
        ((), "No code cell .* defines `class DoRALinear`"),
        ((DORA_CELL,), "No code cell .* defines `class EfficientDoRALinear`"),
        ((RELEASED_CELL, EFFICIENT_CELL), "unsolved student version"),
        (("class DoRALinear(nn.Module:\n", EFFICIENT_CELL), "SyntaxError"),
    ],
    ids=["no_class_cell", "no_bonus_cell", "student_release", "broken_code"],
)
def test_load_classes_says_what_is_wrong(tmp_path, class_cells, expected):
    path = write_notebook(tmp_path / "dora_lab.ipynb", *class_cells)
    with pytest.raises(LabError, match=expected):
        bench.load_classes(path, LAB_CLASSES)


def test_load_classes_missing_file(tmp_path):
    with pytest.raises(LabError, match="does not exist"):
        bench.load_classes(tmp_path / "nowhere.ipynb")


def test_main_prints_a_table_and_writes_json(tmp_path, dora_notebook, capsys, monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    out = tmp_path / "outputs" / "bench.json"
    argv = ["--out", str(out), "--solution", str(dora_notebook), "--sizes", f"{OUT}x{IN}", "--tokens", "4"]
    argv += [str(TOKENS), "--dropouts", "0", "0.1", "--r", "2", "--repeats", "2", "--warmup", "0", "--threads", "1"]
    argv += ["--clock", "cpu"]
    returned = bench.main(argv)
    payload = json.loads(out.read_text())
    assert payload["r"] == 2 and payload["solution"] == str(dora_notebook)
    assert payload["dropouts"] == [0.0, 0.1] and payload["device"] == "cpu" and payload["clock"] == "cpu"
    assert all(run["clock"] == "cpu" for run in payload["results"])
    assert [
        (run["out_features"], run["in_features"], run["tokens"], run["lora_dropout"]) for run in payload["results"]
    ] == [
        (OUT, IN, 4, 0.0),
        (OUT, IN, 4, 0.1),
        (OUT, IN, TOKENS, 0.0),
        (OUT, IN, TOKENS, 0.1),
    ]
    assert payload["results"] == json.loads(json.dumps(returned))
    expected_layers = ["lora", "peft_dora", "lab_dora", "lab_efficient"]
    assert all(list(run["layers"]) == expected_layers for run in payload["results"])
    printed = capsys.readouterr().out
    assert (
        "on 1 CPU threads" in printed
        and "median cpu time" in printed
        and f"{OUT}x{IN}" in printed
        and "lab_efficient" in printed
    )
    assert "load average" in printed and str(out) in printed


@pytest.mark.parametrize(
    "argv",
    [["--sizes", "1024"], ["--dropouts", "1.0"], ["--dropouts", "-0.1"]],
    ids=["size_without_x", "dropout_1", "negative_dropout"],
)
def test_main_rejects_bad_arguments(dora_notebook, argv):
    with pytest.raises(SystemExit):
        bench.main(["--solution", str(dora_notebook), *argv])
