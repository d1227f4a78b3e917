"""nbgrader settings of the DoRA Lab course, read by `nbgrader ...` run from this folder and by `dora-lab`."""

import os

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, RELEASE_DIRECTORY, SOURCE_DIRECTORY  # noqa: F401

c = get_config()  # noqa: F821 (nbgrader provides get_config when it loads this file)

root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = root
c.CourseDirectory.course_id = COURSE_ID
# The one hand-written notebook is solutions/<assignment>/; students get notebooks/<assignment>/.
c.CourseDirectory.source_directory = SOURCE_DIRECTORY
c.CourseDirectory.release_directory = RELEASE_DIRECTORY
# Git-ignored. Grading never uses it: `dora-lab grade` keeps a gradebook in its output folder.
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
