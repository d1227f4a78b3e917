"""Tests of labhelpers.checks, one module per check module; here, what their message tests share."""

import ast
import functools
import re

import nbformat

from labhelpers.assignment import SOURCE_NOTEBOOK

CODE_SHAPES = (
    "nn.Parameter(", "kaiming_uniform_", "nn.Dropout(", "nn.Identity(", ".detach()", "torch.linalg", "nn.init.",
    "vector_norm(", "cosine_similarity(", "clamp_min(", "keepdim=True", "dim=1,", ".item()", ".argmax(",
    "model(**batch)", "torch.no_grad()", "model.train()", "model.eval()", ".backward()", "optimizer.step()",
    ".zero_grad()", "self.",
)  # fmt: skip
"""Text shaped like a line of code to paste: no check message contains any of it."""
SOLUTION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.DOTALL)


def phrase(text: str) -> str:
    """Match text literally, whatever the case of its first letter (hints start a sentence in the message)."""
    return "(?i)" + re.escape(text)


def normalised(text: str) -> str:
    """Remove all whitespace, so that a statement is found however it is spaced or wrapped."""
    return re.sub(r"\s+", "", text)


def _header(node: ast.stmt, lines: list[str]) -> str:
    """Return the header of a compound statement (`for batch in loader:`), without its body."""
    body = node.body[0]
    if body.lineno == node.lineno:
        return lines[node.lineno - 1][node.col_offset : body.col_offset]
    return "\n".join(re.sub(r"#.*", "", line) for line in lines[node.lineno - 1 : body.lineno - 1])


def statements_of(source: str) -> set[str]:
    """Return the statements of the model answer in a cell, normalised: every simple statement between the solution
    markers, the header of every compound one (`for …:`, `with …:`), and every call in them (`model.train()`)."""
    lines = source.splitlines()
    ranges = []
    for match in SOLUTION.finditer(source):
        first = source.count("\n", 0, match.start()) + 1
        ranges.append((first, first + match.group(0).count("\n")))
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.stmt, ast.Call)) or not any(a < node.lineno <= b for a, b in ranges):
            continue
        if isinstance(node, ast.stmt) and hasattr(node, "body"):
            text = _header(node, lines)
        else:
            text = ast.get_source_segment(source, node) or ""
        if len(normalised(text)) >= 8:  # `pass`, `return m`: too short to be a line worth pasting
            found.add(normalised(text))
    return found


@functools.cache
def model_answer_statements() -> frozenset[str]:
    """Return the statements of every model answer in the solutions notebook (see statements_of)."""
    notebook = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    found = set()
    for cell in notebook.cells:
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            found |= statements_of(cell.source)
    return frozenset(found)


def code_shapes_in(text: str) -> list[str]:
    """Return the CODE_SHAPES in text (one that starts with a letter must start a word: `self.`, not `yourself.`)."""
    return [c for c in CODE_SHAPES if re.search((r"(?<!\w)" if c[0].isalpha() else "") + re.escape(c), text)]


def leaks(message: str) -> list[str]:
    """Return what a check message gives away: statements of a model answer and code-shaped text ([] when none)."""
    flat = normalised(message)
    return sorted(s for s in model_answer_statements() if s in flat) + code_shapes_in(message)
