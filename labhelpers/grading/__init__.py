"""The instructor's side: nbgrader release, sandboxed autograding, feedback and grade export (`dora-lab`).

Names load on first use: importing one module of this package (e.g. the sandbox) does not import the whole grader.
"""

from importlib import import_module

_NAMES = {
    "GradingOptions": "labhelpers.grading.batch",
    "grade": "labhelpers.grading.batch",
    "regenerate_feedback": "labhelpers.grading.batch",
    "release": "labhelpers.grading.course",
    "write_grades_csv": "labhelpers.grading.export",
    "LabGradingError": "labhelpers.errors",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
