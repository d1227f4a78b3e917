"""Manual grading in nbgrader's formgrader, on a grading folder's gradebook and its tidied submissions.

nbgrader 0.9's formgrader is a Jupyter server extension (there is no `nbgrader formgrader` command) that reads its
course from nbgrader_config.py in the server's working folder. `serve` starts a Jupyter server in OUT_DIR/course, whose
settings (course.write_course_settings) name OUT_DIR's gradebook and the tidied submissions, with that one extension
enabled on the command line: a command-line setting wins over the environment's files, so the formgrader runs here even
where the shared JupyterLab settings turn nbgrader's instructor extensions off for students.

The formgrader's Autograde button (and `nbgrader autograde` in that folder) would run nbgrader's own autograde: student
code unsandboxed, its notebook's own results in place of the judge's scores. The graded copy's settings give nbgrader's
Autograde converter an exporter that refuses (`AutogradeRefused`); nbgrader creates it before it opens the submission,
so nothing is touched, and the button answers with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbconvert.exporters import NotebookExporter

from labhelpers.errors import LabGradingError
from labhelpers.grading.course import graded_course, venv_bin_on_path, write_course_settings

FORMGRADER_EXTENSION = "nbgrader.server_extensions.formgrader"
DEFAULT_PORT = 8899
REFUSAL = (
    "nbgrader's autograde is off in this graded copy: it would run the student's code outside the sandbox and "
    "replace the scores `dora-lab grade` gave. The scores stand. To grade again, run `dora-lab grade` on the "
    "submissions with the same --out folder; enter manual grades in the formgrader."
)
"""What the formgrader's Autograde button (or `nbgrader autograde` in the graded copy) answers."""


class AutogradeRefused(NotebookExporter):
    """The exporter nbgrader's Autograde gets in the graded copy: creating it fails, before any file or score changes.

    nbgrader's converter creates its exporter (`Autograde.exporter_class`) in `start()`, after only reading which
    notebooks exist and before it removes the autograded folder or opens the gradebook.
    """

    def __init__(self, *args, **kwargs):
        parent = kwargs.get("parent")
        if parent is not None:
            parent.log.error(REFUSAL)  # nbgrader's captured log is what the formgrader shows
        raise LabGradingError(REFUSAL)


@dataclass(frozen=True)
class Formgrader:
    """Where the formgrader of a grading folder listens.

    Attributes:
        out_dir: the grading folder.
        ip: the address it listens on (loopback by default).
        port: the port asked for (Jupyter tries the next ones when it is taken).
        token: the token that opens it (a random one when empty).
    """

    out_dir: Path
    ip: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str = ""


def server_argv(course: Path, options: Formgrader) -> list[str]:
    """Return the Jupyter server's command line: rooted at the graded copy, with the formgrader and nothing else.

    The other server extensions the environment enables (JupyterLab, terminals, the students' nbgrader extensions)
    are turned off for this server: a grading server needs none of them.
    """
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    enabled = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    argv = [f"--ServerApp.jpserver_extensions={FORMGRADER_EXTENSION}=True"]
    argv += [
        f"--ServerApp.jpserver_extensions={name}=False" for name in sorted(enabled) if name != FORMGRADER_EXTENSION
    ]
    argv += [
        f"--ServerApp.root_dir={course}",
        f"--ServerApp.ip={options.ip}",
        f"--ServerApp.port={options.port}",
        f"--IdentityProvider.token={options.token}",
        "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # a classroom VM or container run as root
    return argv


def url(ip: str, port: int, token: str) -> str:
    """Return the formgrader's address with its token."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/formgrader?token={token}"


def _say(line: str) -> None:
    print(line, flush=True)  # seen at once when the output is a pipe (a test, a log)


def serve(options: Formgrader, announce: Callable[[str], None] = _say) -> None:
    """Run nbgrader's formgrader on a grading folder until interrupted (Ctrl-C).

    Args:
        options: the grading folder and where to listen (a random token when none is given).
        announce: receives the line with the address and token, once the server listens.
    """
    from jupyter_server.serverapp import ServerApp

    out_dir = options.out_dir.resolve()
    course, db_path = graded_course(out_dir)
    write_course_settings(course, db_path)
    options = Formgrader(out_dir, options.ip, options.port, options.token or secrets.token_hex(24))
    venv_bin_on_path()  # nbgrader's gradebook runs `alembic`
    os.chdir(course)  # the formgrader reads nbgrader_config.py from the server's working folder
    app = ServerApp.instance()
    app.initialize(argv=server_argv(course, options))
    announce(f"formgrader for {out_dir}: {url(options.ip, app.port, options.token)}")
    announce(f"Ctrl-C stops it; then `dora-lab feedback {out_dir}` and `dora-lab export {out_dir}`.")
    app.start()
