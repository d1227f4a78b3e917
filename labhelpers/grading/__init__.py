"""The instructor's side: nbgrader release, sandboxed autograding, feedback and grade export (`dora-lab`)."""

from labhelpers.errors import LabGradingError
from labhelpers.grading.batch import GradingOptions, grade, regenerate_feedback
from labhelpers.grading.course import release
from labhelpers.grading.export import write_grades_csv

__all__ = ["GradingOptions", "LabGradingError", "grade", "regenerate_feedback", "release", "write_grades_csv"]
