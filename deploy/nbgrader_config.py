"""nbgrader's settings for everyone on the hub: where the exchange is, and the course's id (docs/deploying.md).

Installed as etc/jupyter/nbgrader_config.py of the lab's environment (TLJH: /opt/tljh/user/etc/jupyter/), where every
user's server (the Assignments tab) and `dora-lab` (release, collect, return) read it. `make test-hub` installs this
same file.
"""

from labhelpers.assignment import COURSE_ID

c = get_config()  # noqa: F821 (nbgrader provides get_config when it loads this file)
# One folder that every user's server sees at this path: writable by all (mode 777), nbgrader guards the course
# folders it makes inside.
c.Exchange.root = "/srv/nbgrader/exchange"
c.CourseDirectory.course_id = COURSE_ID
