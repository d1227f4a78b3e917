"""Start a real `jupyter lab` on a free loopback port for the tests that talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

PAGE_CONFIG = re.compile(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.S)
"""The page config JupyterLab's server embeds in /lab for the frontend."""
INSTRUCTOR_PLUGINS = [
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:formgrader",
]
STUDENT_ROUTES = ["/assignments", "/courses", "/assignments/validate"]
"""nbgrader's assignment_list (the Assignments tab) and validate_assignment server extensions (a GET of validate is
405, Method Not Allowed: the route is there)."""
INSTRUCTOR_ROUTES = ["/formgrader", "/formgrader/api/status", "/formgraders"]
"""nbgrader's formgrader and course_list server extensions."""


@dataclass(frozen=True)
class NbgraderTools:
    """What a JupyterLab server offers of nbgrader: the plugins its page turns off, the HTTP status of each route."""

    disabled: list[str]
    routes: dict[str, int]

    @classmethod
    def of(cls, get: Callable[[str], tuple[int, str]]) -> NbgraderTools:
        """Read them from a server, given `get(path) -> (HTTP status, body)` for paths below its base URL."""
        status, page = get("/lab")
        assert status == 200, f"/lab answered {status}"
        config = json.loads(PAGE_CONFIG.search(page).group(1))
        disabled = sorted(name for name in config["disabledExtensions"] if "nbgrader" in name)
        return cls(disabled, {route: get(route)[0] for route in STUDENT_ROUTES + INSTRUCTOR_ROUTES})

    @property
    def students_only(self) -> bool:
        """The student's tools only: the instructor's plugins off and their routes absent, the Assignments tab there."""
        return (
            self.disabled == INSTRUCTOR_PLUGINS
            and all(self.routes[route] != 404 for route in STUDENT_ROUTES)
            and all(self.routes[route] == 404 for route in INSTRUCTOR_ROUTES)
        )

    @property
    def instructors(self) -> bool:
        """The instructor's tools as well: no nbgrader plugin off, every route there."""
        return not self.disabled and all(status != 404 for status in self.routes.values())


def token_getter(base: str, token: str) -> Callable[[str], tuple[int, str]]:
    """Return get(path) -> (HTTP status, body) for a server at `base`, authenticated with `token`."""

    def get(path: str) -> tuple[int, str]:
        request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    return get


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_lab(root_dir: Path, workdir: Path, extra_args=(), extra_env=None):
    """Run `jupyter lab` rooted at `root_dir` with fresh user folders under `workdir`; yield (base_url, token).

    The server starts in `workdir`, outside the project: nbgrader's server extensions read
    nbgrader_config.py from the working folder.
    """
    port, token = free_port(), secrets.token_hex(16)
    home = workdir / "jupyter"
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        # nbgrader's extensions run `alembic`: the venv's bin/ first on PATH.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        **(extra_env or {}),
    }
    command = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--allow-root",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *extra_args,
    ]
    log_path = workdir / "jupyter.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
                try:
                    urllib.request.urlopen(request, timeout=5).close()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if server.poll() is not None or time.monotonic() > deadline:
                        server.kill()
                        pytest.fail(f"jupyter lab did not start:\n{log_path.read_text()}")
                    time.sleep(0.5)
            yield base, token
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
