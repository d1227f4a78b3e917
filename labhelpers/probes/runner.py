"""The probes' side of grading: load a submission's definitions, run the probes the judge asked for, write what they saw.

Runs inside the grading sandbox as ``python -m labhelpers.probes.runner REQUEST.json``, where labhelpers.probes is
all there is of the lab and PEFT's DoRA layer is a stub: an answer that calls the lab's reference code or PEFT's DoRA
raises ReferenceUnavailable, which its check reports. The request names the answer cells (in notebook order), the
instructor's setup imports, and the calls to probe; each call's observation is written to
``<out>/<key>.safetensors`` + ``<out>/<key>.json``. Progress goes to ``<out>/progress`` so that the grader, when this
process hangs or dies, knows which statement or call to skip when it starts it again.

Only imports, def and class statements, and assignments without calls are loaded from the answer cells: top-level
statements (prints, plots, training runs) would only cost time here, and nothing they do can change a verdict,
which is the judge's, outside this process. Cells are read as IPython compiles them (labhelpers.probes.cells): magics
and shell commands become calls, which are not loaded, and a ``%%time`` cell is loaded for its body.
"""

from __future__ import annotations

import ast
import importlib.abc
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from labhelpers.probes import PROBES
from labhelpers.probes.cells import python_statements
from labhelpers.probes.core import Observation, ReferenceUnavailable, StudentError
from labhelpers.probes.transport import write

HIDDEN_PACKAGES = ("labhelpers",)
"""Imports from these packages that fail in the sandbox are bound to placeholders that raise ReferenceUnavailable."""


class ProbeTimeout(BaseException):
    """Raised in student code when a call's time is up (a BaseException: `except Exception` in student code misses it)."""


class Unavailable:
    """Stands for a module or name of the lab that graded answers may not use; any use raises ReferenceUnavailable."""

    def __init__(self, name: str):
        self._name = name

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReferenceUnavailable(f"{self._name} is part of the lab's own code, not available to graded answers")

    __call__ = _refuse

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self._name}: not available to graded answers>"


def loadable(node: ast.stmt) -> bool:
    """Tell whether a top-level statement is kept: imports, definitions, and assignments that call nothing."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)  # a docstring
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) for t in targets) and not any(
            isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)) for n in ast.walk(node.value)
        )
    return False


def statements(source: str) -> tuple[list[ast.Module], int, list[str]]:
    """Split a cell into its loadable statements (one module each) and count the others.

    Args:
        source: the cell's source (IPython syntax allowed: magics become calls, which are not loaded; a Python cell
            magic's body is read as the cell's statements).

    Returns:
        (the kept statements, how many were left out, notes on cell magics not loaded as the notebook ran them).
        Raises SyntaxError when the cell does not parse.
    """
    body, notes = python_statements(source)
    kept = [ast.Module(body=[node], type_ignores=[]) for node in body if loadable(node)]
    return kept, len(body) - len(kept), notes


class LabReferenceFinder(importlib.abc.MetaPathFinder):
    """Answer an import of any lab module but the probes with ReferenceUnavailable, naming the module.

    Inside the probe sandbox those modules do not exist anyway (only labhelpers.probes is mounted); this finder turns
    the bare ImportError into a message that says why.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in HIDDEN_PACKAGES and name != "labhelpers" and not name.startswith("labhelpers.probes"):
            raise ReferenceUnavailable(f"{name} is part of the lab's own code, not available to graded answers")
        return None


def _import_or_placeholder(module: ast.Module, namespace: dict, label: str) -> None:
    """Run an import statement; when it fails on a hidden package, bind its names to Unavailable placeholders."""
    node = module.body[0]
    try:
        exec(compile(module, label, "exec"), namespace)
    except (ImportError, ReferenceUnavailable):
        package = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        if (package or "").split(".")[0] not in HIDDEN_PACKAGES:
            raise
        for alias in node.names:
            if isinstance(node, ast.ImportFrom):
                namespace[alias.asname or alias.name] = Unavailable(f"{package}.{alias.name}")
            else:
                namespace[alias.asname or alias.name.split(".")[0]] = Unavailable(alias.name)


class Progress:
    """The file the grader reads to know where this process was when it stopped."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, text: str) -> None:
        self.path.write_text(text)


def load(request: dict, namespace: dict, progress: Progress) -> list[str]:
    """Run the setup imports, then each answer cell's loadable statements; return notes about what failed."""
    notes = []
    for index, source in enumerate(request.get("preamble", [])):
        for module in statements(source)[0]:
            if isinstance(module.body[0], (ast.Import, ast.ImportFrom)):
                try:
                    _import_or_placeholder(module, namespace, "<setup cell>")
                except Exception as error:  # an unusable setup import leaves that name undefined
                    notes.append(f"setup import {index}: {type(error).__name__}: {error}")
    skip = {tuple(item) for item in request.get("skip", [])}
    for cell, answer in enumerate(request["answers"]):
        label = answer.get("label", f"answer cell {cell + 1}")
        try:
            kept, _, magics = statements(answer["source"])
        except SyntaxError as error:
            notes.append(
                f"{label} has a syntax error ({error.msg}, line {error.lineno}): its definitions were not loaded"
            )
            continue
        notes += [f"{label}: {note}" for note in magics]
        for position, module in enumerate(kept):
            if (cell, position) in skip:
                continue
            progress(json.dumps({"loading": [cell, position]}))
            try:
                if isinstance(module.body[0], (ast.Import, ast.ImportFrom)):
                    _import_or_placeholder(module, namespace, f"<{label}>")
                else:
                    exec(compile(module, f"<{label}>", "exec"), namespace)
            except Exception as error:  # a failing statement is reported; the others still load
                line = getattr(module.body[0], "lineno", "?")
                notes.append(f"{label}, line {line}: {type(error).__name__}: {str(error)[:200]}")
    return notes


def run_call(call: dict, namespace: dict, timeout: int) -> Observation:
    """Probe one check call on the submission's object; a missing object or a time-out is recorded as such."""
    target = call["target"]
    if target not in namespace:
        return Observation(facts={"__missing__": target})
    spec_class, probe = PROBES[call["check"]]
    spec = spec_class.from_json(call["spec"])

    def on_alarm(signum: int, frame: Any) -> None:
        raise ProbeTimeout(f"took longer than {timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    try:
        return probe(namespace[target], spec)
    except ProbeTimeout:
        return Observation(facts={"__timeout__": timeout})
    except StudentError as failure:  # a probe lets none escape; this is a safety net
        obs = Observation()
        obs.error("__error__", failure)
        return obs
    finally:
        signal.alarm(0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    out = Path(request.get("out", "observations"))
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(out / "progress")
    log = open(out / "runner.log", "a")  # noqa: SIM115 - stays open for the whole run
    # Student prints go nowhere: nobody reads them here, and a flood must not fill a pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.meta_path.insert(0, LabReferenceFinder())
    namespace: dict = {"__name__": "__main__"}
    notes = load(request, namespace, progress)
    (out / "load_notes.json").write_text(json.dumps(notes))
    for call in request["calls"]:
        if (out / f"{call['key']}.json").exists():
            continue  # done before a restart
        progress(json.dumps({"calling": call["key"]}))
        try:
            obs = run_call(call, namespace, int(request.get("timeout", 60)))
        except BaseException as error:  # the probe itself failed (student code may have changed it): say so, go on
            log.write(traceback.format_exc())
            log.flush()
            obs = Observation(facts={"__probe_error__": f"{type(error).__name__}: {str(error)[:200]}"})
        write(obs, out / call["key"])
    progress(json.dumps({"done": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
