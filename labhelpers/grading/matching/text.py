"""Cell sources as editors leave them: line ends, blank lines, the names code defines, whether it parses."""

from __future__ import annotations

import ast
import re

# A top-level definition: `def name`, `async def name`, `class name`, or `name = ...` / `name: type = ...`.
_DEFINITION = re.compile(r"^(?:(?:async\s+)?def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)")
# An IPython line magic or shell command (a statement for IPython, a syntax error for ast).
_MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.MULTILINE)


def source_text(value: object) -> str:
    """Return a cell source as one string: nbformat's str, a list of lines, or anything else as empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return ""


def normalise(text: str) -> str:
    """Return `text` as editors leave it comparable: \\n line ends, no trailing spaces, no blank lines around it."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def first_line(norm: str) -> str:
    """Return the first line of a normalised source (how a stub is recognised in place)."""
    return norm.split("\n", 1)[0]


def defined_names(text: str) -> set[str]:
    """Return the names a code cell defines at top level (def, class, assignment), read line by line."""
    return {found.group(1) or found.group(2) for found in map(_DEFINITION.match, text.split("\n")) if found}


def stub_names(text: str) -> set[str]:
    """Return the functions and classes a stub defines: what identifies its answer wherever the student put it."""
    return {found.group(1) for found in map(_DEFINITION.match, text.split("\n")) if found and found.group(1)}


def parses(text: str) -> bool:
    """Say whether a code cell is valid Python, IPython's %magics and !commands counting as statements."""
    python = _MAGIC.sub(r"\1pass", text)
    try:
        ast.parse(python)
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError on absurd nesting: all mean "no"
        return False
    return True
