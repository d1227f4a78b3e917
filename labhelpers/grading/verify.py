"""Re-run the instructor's test cells in a fresh process that loads only the student's definitions.

In the notebook a student's cell can run any statement before the tests (``torch.allclose = lambda *a, **k: True``,
redefining ``check_decompose_weight``, ...). Here each answer cell keeps only its imports, ``def``/``class``
statements and constant assignments, loaded after the instructor's setup cells; then the setup's names (``torch``,
the check functions, ...) are put back, and each test cell runs with a time limit. The library objects the checks rely on are
recorded before any student code runs and compared after every test: a change fails that test as tampering, and
the objects are put back before the next one.

Runs sandboxed: ``python -m labhelpers.grading.verify`` reads a JSON request on stdin and writes one JSON line
per result on its stdout (the student's own prints go to /dev/null).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import signal
import sys
import traceback

# The objects a check's verdict depends on: comparisons, assertions, the checks themselves.
_WATCHED_MODULES = (
    "builtins",
    "math",
    "numpy",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.testing",
    "torch.linalg",
)
_MESSAGE_LIMIT = 4000


class _TestTimeout(BaseException):
    """Raised in the test cell when its time is up (a BaseException: `except Exception` in student code misses it)."""


def definitions_only(source: str) -> tuple[list[ast.Module], int]:
    """Split an answer cell into its importable statements, dropping everything that runs at top level.

    Args:
        source: the cell's source (IPython syntax allowed).

    Returns:
        (one compiled-ready module per kept statement, how many statements were dropped).
    """
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    kept, dropped = [], 0
    for node in tree.body:
        if isinstance(
            node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ) or _constant(node):
            kept.append(ast.Module(body=[node], type_ignores=[]))
        else:
            dropped += 1
    return kept, dropped


def _constant(node: ast.stmt) -> bool:
    """True for `NAME = <literal>` (e.g. EPS = 1e-8) and docstrings: safe to keep, often needed by the functions."""
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not all(isinstance(target, ast.Name) for target in targets):
            return False
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return False
        return True
    return False


def _watched_state() -> dict[tuple[str, str], object]:
    """Record every attribute of the watched modules and classes (identity is what a monkeypatch changes)."""
    import torch

    state: dict[tuple[str, str], object] = {}
    names = list(_WATCHED_MODULES) + [name for name in sys.modules if name.startswith("labhelpers.checks")]
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            for key, value in list(vars(module).items()):
                # Functions, classes and modules only: a lazily filled cache is not tampering.
                if callable(value) or isinstance(value, type(sys)):
                    state[(name, key)] = value
    for cls in (torch.Tensor, torch.nn.Module, torch.nn.Linear, getattr(torch._C, "TensorBase", torch.Tensor)):
        for key, value in list(vars(cls).items()):
            state[(cls.__qualname__, key)] = value
    return state


def _restore(before: dict[tuple[str, str], object]) -> None:
    """Put every watched object back (and drop added builtins), so that one tampering test cannot help the next."""
    import torch

    owners = {name: sys.modules[name] for name in {where for where, _ in before} if name in sys.modules}
    for cls in (torch.Tensor, torch.nn.Module, torch.nn.Linear, getattr(torch._C, "TensorBase", torch.Tensor)):
        owners[cls.__qualname__] = cls
    for (where, key), value in before.items():
        owner = owners.get(where)
        if owner is not None and vars(owner).get(key, _MISSING) is not value:
            try:
                setattr(owner, key, value)
            except (AttributeError, TypeError):
                pass
    import builtins

    for where, key in _watched_state().keys() - before.keys():
        if where == "builtins":
            delattr(builtins, key)


def _changes(before: dict[tuple[str, str], object]) -> list[str]:
    after = _watched_state()
    changed = [
        f"{where}.{key}" for (where, key), value in before.items() if after.get((where, key), _MISSING) is not value
    ]
    added = [f"{where}.{key}" for (where, key) in after.keys() - before.keys() if where == "builtins"]
    return sorted(changed + added)


_MISSING = object()


def run(request: dict, report) -> None:
    """Load the definitions, run the setup and each test cell, calling report(**record) after each test."""
    timeout = int(request.get("timeout", 60))

    def on_alarm(signum, frame):
        raise _TestTimeout(f"the test took longer than {timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    for name in ("torch", "numpy", "IPython.core.inputtransformer2", *request.get("preload", [])):
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional module is the setup cell's problem, reported there
            pass
    namespace: dict = {"__name__": "__main__"}
    try:
        for source in request["setup"]:
            exec(compile(source, "<setup cell>", "exec"), namespace)
    except Exception as error:  # the instructor's cells: every test fails, and the report says why
        report(setup_error="".join(traceback.format_exception_only(type(error), error)).strip()[:_MESSAGE_LIMIT])
        raise
    instructor_names = dict(namespace)
    before = _watched_state()
    notes = []
    for index, source in enumerate(request["answers"]):
        try:
            statements, dropped = definitions_only(source)
        except SyntaxError as error:
            notes.append(f"answer cell {index + 1} has a syntax error ({error.msg}, line {error.lineno})")
            continue
        if dropped:
            notes.append(f"answer cell {index + 1}: {dropped} top-level statement(s) ignored")
        for statement in statements:
            signal.alarm(timeout)
            try:
                exec(compile(statement, f"<answer cell {index + 1}>", "exec"), namespace)
            except BaseException as error:
                notes.append(f"answer cell {index + 1}: {type(error).__name__}: {error}"[:300])
            finally:
                signal.alarm(0)
    # The setup's names (torch, the check functions, ...) are the instructor's again, whatever the answers defined.
    namespace.update(instructor_names)
    loaded_tampering = _changes(before)
    if loaded_tampering:
        notes.append(
            "loading the answers replaced " + ", ".join(loaded_tampering[:5]) + " (put back before the tests)"
        )
        _restore(before)
    report(notes=notes)
    for test in request["tests"]:
        passed, message = False, ""
        signal.alarm(timeout)
        try:
            exec(compile(test["source"], f"<test {test['grade_id']}>", "exec"), dict(namespace))
            passed = True
        except BaseException as error:
            message = "".join(traceback.format_exception_only(type(error), error)).strip()
        finally:
            signal.alarm(0)
        tampered = _changes(before)
        if tampered:
            # The verdict may rest on a replaced comparison or check: the test fails, the next one starts clean.
            passed, message = False, "answer code replaced " + ", ".join(tampered[:5])
            _restore(before)
        report(grade_id=test["grade_id"], passed=passed, tampered=bool(tampered), message=message[:_MESSAGE_LIMIT])
    report(done=True)


def main() -> None:
    request = json.loads(sys.stdin.read())
    nonce = request.pop("nonce")
    results = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    def report(**record) -> None:
        results.write(json.dumps({"nonce": nonce, **record}) + "\n")
        results.flush()

    run(request, report)
    results.close()
    os._exit(0)  # skip interpreter shutdown: student objects' __del__ must not run after the verdict


if __name__ == "__main__":
    main()
