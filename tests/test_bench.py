"""labhelpers.bench: structure of the timing results, interleaving, ratios, JSON, loading DoRALinear from a notebook.

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
        self.lora_dropout = nn.Identity()
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return F.linear(x, self.magnitude * V / torch.linalg.vector_norm(V, dim=1, keepdim=True).detach(), self.bias)
        ### END SOLUTION
"""

RELEASED_CELL = """\
class DoRALinear(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()
"""


def write_notebook(path, class_cell: str | None):
    """Write a notebook shaped like the lab's: a markdown cell, a setup cell that must not run, the class cell."""
    cells = [
        nbformat.v4.new_markdown_cell("## Exercise 2: Full DoRA Layer Implementation"),
        nbformat.v4.new_code_cell("raise RuntimeError('the setup cell must not run when loading a class')"),
    ]
    if class_cell is not None:
        cells.append(nbformat.v4.new_code_cell(class_cell))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


class RecordingLinear(nn.Linear):
    """An nn.Linear that appends its name to a shared list on every forward, to see the order layers ran in."""

    def __init__(self, name: str, calls: list[str]):
        super().__init__(IN, OUT)
        self.name, self.calls = name, calls

    def forward(self, x):
        self.calls.append(self.name)
        return super().forward(x)


@pytest.fixture(scope="module")
def dora_notebook(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("nb") / "dora_lab.ipynb", DORA_CELL)


@pytest.fixture(scope="module")
def results(dora_notebook):
    """One small run of the three layers the lab compares."""
    factories = bench.default_factories(IN, OUT, r=2, lab_layer=bench.load_class(dora_notebook))
    return bench.time_layers(factories, IN, OUT, TOKENS, repeats=4, warmup=1, threads=1)


def test_results_have_one_entry_per_layer_with_settings(results):
    assert list(results["layers"]) == ["lora", "peft_dora", "lab_dora"]
    assert (results["in_features"], results["out_features"], results["tokens"]) == (IN, OUT, TOKENS)
    assert (results["repeats"], results["warmup"], results["threads"], results["baseline"]) == (4, 1, 1, "lora")
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
    results = bench.time_layers(factories, IN, OUT, TOKENS, repeats=2, warmup=0, threads=1)
    assert results["baseline"] is None
    assert results["layers"]["plain"]["ratio"] is None


def test_rounds_interleave_the_layers_and_rotate_the_first():
    calls: list[str] = []
    names = ["lora", "b", "c"]
    factories = {name: (lambda name=name: RecordingLinear(name, calls)) for name in names}
    results = bench.time_layers(factories, IN, OUT, TOKENS, repeats=6, warmup=2, threads=1)
    # Every training step runs the layer forward exactly once; the warmup rounds come first.
    timed_calls = calls[2 * len(names) : 2 * len(names) + 6 * len(names)]
    assert results["schedule"] == timed_calls
    rounds = [timed_calls[i : i + len(names)] for i in range(0, len(timed_calls), len(names))]
    assert all(sorted(block) == sorted(names) for block in rounds), rounds
    assert {block[0] for block in rounds} == set(names), "the first layer of a round should rotate"


def test_layers_start_from_the_same_base_weight(dora_notebook):
    """At init lora_B is zero, so every layer equals the shared base nn.Linear."""
    factories = bench.default_factories(IN, OUT, r=2, lab_layer=bench.load_class(dora_notebook))
    x = torch.randn(TOKENS, IN)
    outputs = {name: make()(x) for name, make in factories.items()}
    for name, y in outputs.items():
        assert y.shape == (TOKENS, OUT), name
        torch.testing.assert_close(y, outputs["lora"], msg=f"{name} differs from lora at init")


@pytest.mark.parametrize("threads", [1, 2], ids=["one_thread", "two_threads"])
def test_thread_count_is_restored(threads):
    before = torch.get_num_threads()
    bench.time_layers({"lora": lambda: nn.Linear(IN, OUT)}, IN, OUT, TOKENS, repeats=1, warmup=0, threads=threads)
    assert torch.get_num_threads() == before


def test_peak_memory_grows_with_tokens():
    layer = nn.Linear(IN, OUT)
    small, large = (
        bench.peak_step_bytes(layer, torch.randn(n, IN, requires_grad=True), torch.randn(n, OUT)) for n in (64, 256)
    )
    # The output (tokens, OUT) and the input gradient (tokens, IN) are float32 and live at the same time.
    assert large >= 256 * (IN + OUT) * 4
    assert large > small


def test_format_table_has_a_row_per_layer_and_size(results):
    header, rule, *rows = bench.format_table([results]).splitlines()
    assert "median ms" in header and set(rule) == {"-"}
    assert len(rows) == len(results["layers"])
    for line, (name, row) in zip(rows, results["layers"].items()):
        assert line.split()[:3] == [f"{OUT}x{IN}", str(TOKENS), name], line
        assert f"{row['ratio']:.3f}" in line, line


@pytest.mark.parametrize(
    "source, suffix",
    [
        (DORA_CELL, ".ipynb"),
        ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n" + DORA_CELL, ".py"),
    ],
    ids=["notebook_cell", "python_file"],
)
def test_load_class_runs_only_the_class_code(tmp_path, source, suffix):
    path = tmp_path / f"solution{suffix}"
    if suffix == ".ipynb":
        write_notebook(path, source)
    else:
        path.write_text(source)
    DoRALinear = bench.load_class(path)
    base = nn.Linear(IN, OUT)
    layer = DoRALinear(base, r=2, lora_alpha=4.0)
    x = torch.randn(3, 5, IN)  # 3-D input
    torch.testing.assert_close(layer(x), base(x))
    assert layer.magnitude.shape == (OUT, 1)


@pytest.mark.parametrize(
    "class_cell, expected",
    [
        (None, "No code cell"),
        (RELEASED_CELL, "unsolved student version"),
        ("class DoRALinear(nn.Module:\n", "SyntaxError"),
    ],
    ids=["no_class_cell", "student_release", "broken_code"],
)
def test_load_class_says_what_is_wrong(tmp_path, class_cell, expected):
    path = write_notebook(tmp_path / "dora_lab.ipynb", class_cell)
    with pytest.raises(LabError, match=expected):
        bench.load_class(path)


def test_load_class_missing_file(tmp_path):
    with pytest.raises(LabError, match="does not exist"):
        bench.load_class(tmp_path / "nowhere.ipynb")


def test_main_prints_a_table_and_writes_json(tmp_path, dora_notebook, capsys):
    out = tmp_path / "outputs" / "bench.json"
    argv = [
        "--out",
        str(out),
        "--solution",
        str(dora_notebook),
        "--sizes",
        f"{OUT}x{IN}",
        "--tokens",
        "4",
        str(TOKENS),
        "--r",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
    ]
    returned = bench.main(argv)
    payload = json.loads(out.read_text())
    assert payload["r"] == 2 and payload["solution"] == str(dora_notebook)
    assert [(run["out_features"], run["in_features"], run["tokens"]) for run in payload["results"]] == [
        (OUT, IN, 4),
        (OUT, IN, TOKENS),
    ]
    assert payload["results"] == json.loads(json.dumps(returned))
    assert all(list(run["layers"]) == ["lora", "peft_dora", "lab_dora"] for run in payload["results"])
    printed = capsys.readouterr().out
    assert f"{OUT}x{IN}" in printed and "lab_dora" in printed and str(out) in printed


def test_main_rejects_a_size_without_x(dora_notebook):
    with pytest.raises(SystemExit):
        bench.main(["--solution", str(dora_notebook), "--sizes", "1024"])
