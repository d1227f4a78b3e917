"""A notebook code cell as Python: IPython's syntax turned into calls, the body of a Python cell magic unwrapped.

IPython's own transformer (``IPython.core.inputtransformer2.TransformerManager``, what the kernel runs before
compiling a cell) turns ``!pip install …`` into ``get_ipython().system(…)``, ``%load_ext …`` and ``obj?`` into
``get_ipython().run_line_magic(…)``, and a whole ``%%time`` cell into one ``get_ipython().run_cell_magic('time', '',
body)`` call. Those calls are never loaded by the probes (nothing here defines ``get_ipython``, so no shell command can
run); the body of a cell magic that runs Python (``%%time``, ``%%capture``, ``%%prun``, ``%%timeit``) is read as the
cell's own statements, and any other cell magic (``%%bash``, ``%%writefile``) is left out with a note.
"""

from __future__ import annotations

import ast

PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
"""Cell magics whose body is Python that IPython runs (in the notebook's namespace, but for timeit)."""
OWN_SCOPE_MAGICS = frozenset({"timeit"})
"""Python cell magics that run their body inside a function of their own: the notebook keeps none of its names."""


def python_statements(source: str) -> tuple[list[ast.stmt], list[str]]:
    """Return a cell's top-level statements as IPython would compile them, Python cell magics unwrapped.

    Args:
        source: a code cell's source, IPython syntax allowed.

    Returns:
        (the statements, in order, line numbers counted in the cell; notes on cell magics whose body is not loaded as
        the notebook ran it, one short clause each). Raises SyntaxError when the cell (or a magic's body) does not
        parse.
    """
    try:
        tree = ast.parse(source)  # plain Python, which IPython compiles unchanged (and parses 100 times faster)
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    statements: list[ast.stmt] = []
    notes: list[str] = []
    for node in tree.body:
        magic = cell_magic(node)
        if magic is None:
            statements.append(node)
            continue
        name, body = magic
        if name not in PYTHON_CELL_MAGICS:
            notes.append(f"%%{name} cell not loaded (its body is not Python)")
            continue
        inner, inner_notes = python_statements(body)
        for statement in inner:
            ast.increment_lineno(statement, node.lineno)  # the body starts on the line after %%name
        statements += inner
        notes += inner_notes
        if name in OWN_SCOPE_MAGICS:
            notes.append(f"%%{name} runs its body in a function of its own: its definitions were loaded all the same")
    return statements, notes


def cell_magic(node: ast.stmt) -> tuple[str, str] | None:
    """Return (magic name, body) when `node` is IPython's ``get_ipython().run_cell_magic(name, line, body)``."""
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return None
    call = node.value
    function = call.func
    if not (
        isinstance(function, ast.Attribute)
        and function.attr == "run_cell_magic"
        and isinstance(function.value, ast.Call)
        and isinstance(function.value.func, ast.Name)
        and function.value.func.id == "get_ipython"
        and len(call.args) == 3
        and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in call.args)
    ):
        return None
    return call.args[0].value, call.args[2].value


def bound_names(node: ast.stmt) -> list[str]:
    """Return the names a top-level statement binds: a def or class, an import, or an assignment to plain names."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name != "*"]
    targets = (
        node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    )
    return [target.id for target in targets if isinstance(target, ast.Name)]
