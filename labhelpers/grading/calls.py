"""The instructor's test cells as data: which check each calls, on which answer, with which settings — and the seeds.

Every autograded test cell of the source notebook is a docstring and calls of the lab's checks, visible and hidden,
e.g. ``check_dora_linear(DoRALinear, shapes=[(19, 6)], seeds=[21], r=3, dtype=torch.float32)``. The grader never
runs those cells to score: it reads them here, replaces every seed by one drawn from the course's secret (so that no
submission can precompute its inputs, and grading again gives the same result), lets the probes run in the sandbox
and the judges decide outside it. A test cell holding anything else is an instructor error, reported before any
submission is graded.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labhelpers.errors import LabGradingError
from labhelpers.grading.course import grade_cells

SECRET_FILE = "grading_secret"
"""The course's secret, in the grading output folder (readable by the instructor only)."""


@dataclass(frozen=True)
class CheckCall:
    """One call of a check in a test cell.

    Attributes:
        check: the check function's name, e.g. "check_dora_linear".
        target: the name of the student's function or class it checks, e.g. "DoRALinear".
        spec: the call's keyword arguments as a Spec's JSON (seeds included).
        key: a unique name of this call when grading: "<grade_id>.<index in the cell>".
    """

    check: str
    target: str
    spec: dict
    key: str = ""


@dataclass(frozen=True)
class GradedCell:
    """An autograded test cell: its grade id, points, exercise and the check calls it makes."""

    grade_id: str
    points: float
    exercise: int
    calls: tuple[CheckCall, ...] = field(default_factory=tuple)


def _literal(node: ast.expr, where: str):
    """Evaluate a keyword argument: literals, and torch dtypes written as torch.float32."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch":
        return node.attr
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, where) for item in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise LabGradingError(f"{where}: {ast.unparse(node)} is not a literal the grader can read") from None


def parse_test_cell(source: str, grade_id: str) -> tuple[CheckCall, ...]:
    """Read the check calls of one test cell (visible and hidden alike).

    Args:
        source: the instructor's cell source, hidden-test markers included (they are comments).
        grade_id: for messages and call keys.

    Returns:
        The calls, in order. Raises LabGradingError for any statement other than a docstring or a check call.
    """
    from labhelpers.probes import PROBES

    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise LabGradingError(f"test cell {grade_id} does not parse: {error}") from None
    calls = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the cell's docstring
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in PROBES):
            raise LabGradingError(
                f"test cell {grade_id}: `{ast.unparse(node)[:80]}` is not a call of one of the lab's checks "
                f"({', '.join(PROBES)}): the grader judges test cells outside the sandbox and can only run those."
            )
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
            raise LabGradingError(
                f"test cell {grade_id}: {call.func.id} must be given the student's name as its one positional argument"
            )
        where = f"test cell {grade_id}, {call.func.id}"
        arguments = {keyword.arg: _literal(keyword.value, where) for keyword in call.keywords}
        spec_class, _ = PROBES[call.func.id]
        try:
            spec = spec_class.make(**arguments)
        except (TypeError, ValueError) as error:
            raise LabGradingError(f"{where}: {error}") from None
        key = f"{grade_id}.{len(calls)}"
        calls.append(CheckCall(check=call.func.id, target=call.args[0].id, spec=spec.to_json(), key=key))
    if not calls:
        raise LabGradingError(f"test cell {grade_id} calls no check: the grader would have nothing to judge")
    return tuple(calls)


def graded_cells(source: nbformat.NotebookNode) -> list[GradedCell]:
    """Return every autograded test cell of the instructor's source notebook, with its check calls."""
    return [
        GradedCell(cell.grade_id, cell.points, cell.exercise, parse_test_cell(cell.source, cell.grade_id))
        for cell in grade_cells(source)
        if cell.autograded
    ]


def course_secret(out_dir: Path) -> bytes:
    """Return the grading folder's secret, creating it (readable by its owner only) the first time."""
    path = out_dir / SECRET_FILE
    if not path.is_file():
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return bytes.fromhex(path.read_text().strip())


def with_secret_seeds(call: CheckCall, secret: bytes) -> CheckCall:
    """Return the call with each seed replaced by one derived from the secret, the call's key and its position."""
    from labhelpers.probes import PROBES

    spec_class, _ = PROBES[call.check]
    spec = spec_class.from_json(call.spec)
    seeds = []
    for position in range(len(spec.seeds)):
        digest = hmac.new(secret, f"{call.key}/{position}".encode(), hashlib.sha256).digest()
        seeds.append(int.from_bytes(digest[:4], "big") % 2**31)
    return CheckCall(call.check, call.target, spec.with_seeds(seeds).to_json(), call.key)
