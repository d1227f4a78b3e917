"""Start a real `jupyter lab` on a free loopback port for the tests that talk to it."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


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
