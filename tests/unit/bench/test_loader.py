"""labhelpers.bench.loader: the lab's layer classes from a notebook's cells or a .py file, and what goes wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from labhelpers import bench
from labhelpers.errors import LabError
from tests.support.layer_cells import DORA_CELL, EFFICIENT_CELL, IN, LAB_CLASSES, OUT, RELEASED_CELL, write_notebook


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


def test_load_classes_skips_the_top_level_calls_of_a_defining_cell(tmp_path):
    """As the grader loads answer cells: definitions and call-free assignments load, a cell's other calls never run."""
    cell = DORA_CELL + "\nRANK = 2\nraise RuntimeError('a top-level statement ran')\nprint(DoRALinear)\n"
    path = write_notebook(tmp_path / "dora_lab.ipynb", cell)
    layer = bench.load_classes(path)["DoRALinear"](nn.Linear(IN, OUT), r=2)
    assert layer.lora_A.shape == (2, IN)


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
        (("class DoRALinear(Missing):\n    pass\n", EFFICIENT_CELL), "failed: NameError: name 'Missing'"),
    ],
    ids=["no_class_cell", "no_bonus_cell", "student_release", "broken_code", "undefined_base_class"],
)
def test_load_classes_says_what_is_wrong(tmp_path, class_cells, expected):
    path = write_notebook(tmp_path / "dora_lab.ipynb", *class_cells)
    with pytest.raises(LabError, match=expected):
        bench.load_classes(path, LAB_CLASSES)


def test_a_python_file_without_the_class_says_so(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text("import torch\n")
    with pytest.raises(LabError, match="does not define `class DoRALinear`: pass a file that does"):
        bench.load_classes(path)


def test_load_classes_missing_file(tmp_path):
    with pytest.raises(LabError, match="does not exist"):
        bench.load_classes(tmp_path / "nowhere.ipynb")
