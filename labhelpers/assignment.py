"""The assignment's names and places, in nbgrader's layout: one course, one assignment, one notebook.

Every module reads them here: nbgrader_config.py, the release, the grader and the exchange.
"""

from __future__ import annotations

from labhelpers.config import PROJECT_ROOT

COURSE_ID = "dora-lab"
"""nbgrader's course id (CourseDirectory.course_id), also the exchange's course folder on a hub."""
ASSIGNMENT = "dora"
"""The assignment: solutions/dora/ (instructor's source) and notebooks/dora/ (student release)."""
NOTEBOOK = "dora_lab"
"""The notebook's name, without .ipynb."""
SOURCE_DIRECTORY = "solutions"
"""nbgrader's source_directory: the one hand-written notebook, with solutions and hidden tests."""
RELEASE_DIRECTORY = "notebooks"
"""nbgrader's release_directory: the generated student notebook."""
SUBMITTED_DIRECTORY = "submitted"
"""nbgrader's submitted_directory: submissions by student, <course>/submitted/<student_id>/<assignment>/."""

SOURCE_NOTEBOOK = PROJECT_ROOT / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
RELEASE_NOTEBOOK = PROJECT_ROOT / RELEASE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
