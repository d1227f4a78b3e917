"""Load layer classes from the code cells of a notebook (or a .py file) that define them, and nothing else.

The statements are those the grader loads from answer cells (labhelpers.probes.runner.statements): imports,
definitions and assignments without calls, so a cell's prints, plots or training runs never run here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from labhelpers.errors import LabError
from labhelpers.probes.runner import statements


def _class_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^class\s+{re.escape(name)}\b", re.MULTILINE)


def _defining_sources(path: Path, names: Sequence[str]) -> list[str]:
    """Return the sources that define `names`: the notebook's defining cells in notebook order, or the .py file."""
    if path.suffix != ".ipynb":
        source = path.read_text(encoding="utf-8")
        for name in names:
            if not _class_pattern(name).search(source):
                raise LabError(f"{path} does not define `class {name}`: pass a file that does.")
        return [source]
    import nbformat

    code = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    chosen = set()
    for name in names:
        defining = [i for i, source in enumerate(code) if _class_pattern(name).search(source)]
        if not defining:
            raise LabError(f"No code cell of {path} defines `class {name}`: pass the notebook that defines it.")
        chosen.add(defining[-1])  # the last definition wins, as when the notebook runs top to bottom
    # Notebook order, so that a class can build on an earlier one (EfficientDoRALinear subclasses DoRALinear).
    return [code[i] for i in sorted(chosen)]


def load_classes(path: str | Path, names: Sequence[str] = ("DoRALinear",)) -> dict[str, type]:
    """Load classes from a notebook's code cells (those defining them) or from a .py file, in one fresh namespace.

    The namespace starts with torch, nn (torch.nn) and F (torch.nn.functional), the imports the lab's notebook makes
    in its setup cell. nbgrader's ### BEGIN/END SOLUTION markers are comments and load as they are.

    Args:
        path: a .ipynb notebook or a .py file.
        names: the classes to find.

    Returns:
        name -> class, for each of `names`. Raises LabError saying what to pass instead when a class is missing,
        unsolved or fails to load.
    """
    path, wanted = Path(path), ", ".join(names)
    if not path.is_file():
        raise LabError(
            f"{path} does not exist: pass the solutions notebook (solutions/dora/dora_lab.ipynb) or a .py file "
            f"defining {wanted}."
        )
    sources = _defining_sources(path, names)
    for source in sources:
        if "raise NotImplementedError" in source and "YOUR CODE HERE" in source:
            raise LabError(f"{path} holds the unsolved student version of {wanted}: pass a solved notebook or file.")
    namespace = {"__name__": "labhelpers_bench_solution", "torch": torch, "nn": nn, "F": F}
    try:
        for source in sources:
            for module in statements(source)[0]:
                exec(compile(module, str(path), "exec"), namespace)
    except Exception as exc:
        raise LabError(
            f"Running the code that defines {wanted} in {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return {name: namespace[name] for name in names}
