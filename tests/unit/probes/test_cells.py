"""Cells read as IPython compiles them: magics and shell commands become calls, a Python cell magic gives its body."""

from __future__ import annotations

import ast

import pytest

from labhelpers.probes.cells import bound_names, python_statements

BODY = "def f(x):\n    return x\n"
TIMEIT = "%%timeit runs its body in a function of its own: its definitions were loaded all the same"
# (name, cell, the names its statements bind, the notes)
CELLS = [
    ("plain_python", BODY, ["f"], []),
    ("time", "%%time\n" + BODY, ["f"], []),
    ("capture_with_a_name", "%%capture captured\n" + BODY, ["f"], []),
    ("prun_with_options", "%%prun -q -l 4\n" + BODY, ["f"], []),
    ("timeit", "%%timeit -n1 -r1\n" + BODY, ["f"], [TIMEIT]),
    ("capture_around_time", "%%capture\n%%time\n" + BODY, ["f"], []),
    ("line_magics_and_shell", "!pip install peft\n%load_ext autoreload\n%matplotlib inline\n" + BODY, ["f"], []),
    ("help", "?f\nf?\nf??\n%pinfo f\n" + BODY, ["f"], []),
    ("shell_output_assigned", "files = !ls\n" + BODY, ["files", "f"], []),
    ("magic_inside_capture", "%%capture\n!ls\nimport os\n" + BODY, ["os", "f"], []),
    ("bash", "%%bash\necho def f\n", [], ["%%bash cell not loaded (its body is not Python)"]),
    ("writefile", "%%writefile answer.py\n" + BODY, [], ["%%writefile cell not loaded (its body is not Python)"]),
]


@pytest.mark.parametrize(("source", "names", "notes"), [case[1:] for case in CELLS], ids=[case[0] for case in CELLS])
def test_a_cell_is_read_as_ipython_compiles_it(source, names, notes):
    statements, said = python_statements(source)
    assert [name for statement in statements for name in bound_names(statement)] == names
    assert said == notes


def test_a_cell_magics_body_keeps_the_cells_line_numbers():
    statements, _ = python_statements("%%time\nx = 1\n\ndef f():\n    pass\n")
    assert [statement.lineno for statement in statements] == [2, 4]


@pytest.mark.parametrize("source", ["def f(:\n", "%%time\ndef f(:\n"], ids=["plain", "in_a_cell_magic"])
def test_a_cell_that_does_not_parse_raises_syntax_error(source):
    with pytest.raises(SyntaxError):
        python_statements(source)


def test_magics_and_shell_commands_are_calls_of_a_get_ipython_nothing_defines():
    statements, _ = python_statements("!rm -rf /\n%load_ext autoreload\nx = !ls\n%%bash\nls\n")
    calls = [node for statement in statements for node in ast.walk(statement) if isinstance(node, ast.Call)]
    assert calls and all(ast.unparse(call).startswith("get_ipython()") for call in calls if call.args)


def test_bound_names_are_those_a_statement_binds_at_top_level():
    source = "import torch.nn as nn, os.path\nfrom a import b as c\nfrom d import *\nclass K: pass\nx: int = 1\ny = z = 2\nw[0] = 1"
    names = [name for statement in ast.parse(source).body for name in bound_names(statement)]
    assert names == ["nn", "os", "c", "K", "x", "y", "z"]
