"""The judge's side of grading: read what the sandboxed probes recorded and decide every test cell.

Runs in the grader's own process, which never imports, unpickles or executes anything from a submission: it reads
observation files (safetensors and JSON, labhelpers.probes.transport), rebuilds every input from the spec, computes the
references (PEFT, autograd, the definitions) and writes one Verdict per test cell — the score and the message the
student reads.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.checks import JUDGES
from labhelpers.checks.core import CheckFailed
from labhelpers.checks.noted import noting_mistakes
from labhelpers.grading.calls import CheckCall, GradedCell
from labhelpers.probes import PROBES
from labhelpers.probes.transport import ObservationError, read


@dataclass
class Verdict:
    """The judge's decision on one test cell.

    Attributes:
        grade_id: the test cell.
        passed: every check call of the cell passed.
        message: the ✔ summary of a pass, or what failed and how to fix it.
        reason: why the test failed beyond a wrong answer, for the status column: "unavailable" (the answer called
            reference code), "missing" (the answer's name is not defined), "timeout", "no record" (the probe gave no
            usable observation) or "grader error"; "" otherwise.
        details: the ✔ summary of each check call, when every one passed.
        mistakes: the names of the known mistakes the failure's message explains (checks' Mistake.name), as the
            class report counts them; empty for a pass and for a failure no known mistake explains.
    """

    grade_id: str
    passed: bool
    message: str
    reason: str = ""
    details: list[str] = field(default_factory=list)
    mistakes: list[str] = field(default_factory=list)


def judge_call(call: CheckCall, folder: Path) -> tuple[bool, str, str]:
    """Judge one check call from its observation files; (passed, message, reason)."""
    passed, message, reason, _ = judge_call_naming_mistakes(call, folder)
    return passed, message, reason


def judge_call_naming_mistakes(call: CheckCall, folder: Path) -> tuple[bool, str, str, list[str]]:
    """Judge one check call from its observation files; (passed, message, reason, names of the mistakes explained)."""
    try:
        obs = read(folder / call.key)
    except ObservationError as error:
        return False, f"the grader received no usable record of this check ({error}).", "no record", []
    if "__missing__" in obs.facts:
        return (
            False,
            f"`{call.target}` is not defined by your answers. When grading, the imports, `def` and `class` statements "
            f"(and assignments that call nothing) of your answer cells are loaded: define {call.target} with `def` or "
            f"`class` in a code cell.",
            "missing",
            [],
        )
    if "__ended__" in obs.facts:
        return (
            False,
            f"your code ended the process while this check ran (exit status {obs.facts['__ended__']}): no os._exit, "
            f"sys.exit or kill in the functions the check calls.",
            "no record",
            [],
        )
    if "__timeout__" in obs.facts:
        return False, f"the check did not finish within {obs.facts['__timeout__']} s.", "timeout", []
    if "__probe_error__" in obs.facts:
        return (
            False,
            f"the check stopped while recording what your code did ({obs.facts['__probe_error__']}); did your code "
            f"change functions of the lab or of the libraries?",
            "no record",
            [],
        )
    spec_class, _ = PROBES[call.check]
    noted: list[str] = []
    try:
        spec = spec_class.from_json(call.spec)
        with noting_mistakes() as noted:
            summary = JUDGES[call.check](spec, obs)
    except CheckFailed as failure:
        names = list(dict.fromkeys([*failure.mistakes, *noted]))
        return False, str(failure), "unavailable" if failure.unavailable else "", names
    except Exception as error:  # a record the judge cannot read is the grader's problem to report
        where = traceback.extract_tb(error.__traceback__)[-1]
        detail = f"{type(error).__name__} at {Path(where.filename).name}:{where.lineno}"
        return False, f"the grader could not judge this check ({detail}).", "grader error", []
    return True, f"✔ {summary}", "", []


def judge_cell(cell: GradedCell, calls: list[CheckCall], folder: Path) -> Verdict:
    """Judge a test cell: it passes when every one of its calls passes; the first failure is its message."""
    summaries = []
    for call in calls:
        passed, message, reason, mistakes = judge_call_naming_mistakes(call, folder)
        if not passed:
            return Verdict(cell.grade_id, False, message, reason, mistakes=mistakes)
        summaries.append(message)
    more = len(summaries) - 1
    message = summaries[0] + (f" (and {more} more check{'s' * (more > 1)} on other inputs)" if more else "")
    return Verdict(cell.grade_id, True, message, details=summaries)
