"""A real JupyterHub on loopback for the tests: local system users, PAM log-in, single-user servers from this venv.

Everything lives under one temporary folder and a few system users that `local_users` creates and removes; the hub,
its proxy and every single-user server stop when `running_hub` exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.jupyter import free_port

USER_COMMENT = "dora-lab hub test user pid "
"""The GECOS field of the users the tests create, then the creating process's id: how a leftover is recognised."""
VENV_BIN = Path(sys.executable).parent


def find_proxy() -> Path | None:
    """Return configurable-http-proxy: the one `make hub-proxy` put in .venv/node, else the one on PATH."""
    local = VENV_BIN.parent / "node" / "bin" / "configurable-http-proxy"
    if local.is_file():
        return local
    found = shutil.which("configurable-http-proxy")
    return Path(found) if found else None


@dataclass(frozen=True)
class LocalUser:
    """A system user made for one test run: log-in name, password and home folder."""

    name: str
    password: str
    home: Path

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run `command` as this user (runuser, a login-like environment) and return what it did."""
        return subprocess.run(
            ["runuser", "-u", self.name, "--", "env", f"HOME={self.home}", *command],
            cwd=self.home,
            capture_output=True,
            text=True,
            **kwargs,
        )


def _user_processes(uid: int) -> list[int]:
    """Return the ids of the processes that run as `uid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def _remove_user(name: str) -> None:
    """Stop whatever still runs as the test user `name` (its own processes, by id), then delete the user."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for pid in _user_processes(uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _user_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["userdel", name], check=False, capture_output=True)


def remove_leftover_users() -> None:
    """Delete the test users, and their temporary folders, that a run killed before its clean-up left behind."""
    for entry in pwd.getpwall():
        owner = entry.pw_gecos.removeprefix(USER_COMMENT)
        if owner != entry.pw_gecos and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _remove_user(entry.pw_name)
            root = Path(entry.pw_dir).parent.parent
            if root.name.startswith("dora-lab-hub-"):
                shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def local_users(roles: list[str], home_root: Path) -> Iterator[dict[str, LocalUser]]:
    """Create one system user per role (homes in `home_root`, mode 0700, random passwords); delete them on exit.

    Args:
        roles: short role names, e.g. ["inst", "ana", "ben"]; each becomes part of a user name.
        home_root: the folder that holds the homes (must be traversable by the users).

    Yields:
        {role: LocalUser}.
    """
    remove_leftover_users()
    tag = secrets.token_hex(2)
    users: dict[str, LocalUser] = {}
    try:
        for role in roles:
            name = f"dora{tag}{role}"
            home = home_root / name
            subprocess.run(
                ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group"]
                + ["--comment", f"{USER_COMMENT}{os.getpid()}", name],
                check=True,
                capture_output=True,
            )
            os.chmod(home, 0o700)
            password = secrets.token_urlsafe(18)
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
            users[role] = LocalUser(name=name, password=password, home=home)
        yield users
    finally:
        for user in users.values():
            _remove_user(user.name)


_HUB_CONFIG = """\
# JupyterHub for the DoRA Lab hub test: loopback only, PAM log-in of local users, servers from the project's venv.
import json

settings = json.loads({settings!r})
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = settings["url"]
c.JupyterHub.hub_bind_url = settings["hub_url"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [settings["proxy"]]
c.ConfigurableHTTPProxy.debug = False
c.JupyterHub.db_url = "sqlite:///" + settings["workdir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["workdir"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = settings["workdir"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "pam"
# In a container there is no login session to open (systemd-logind); the password check is all PAM does here.
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set(settings["users"])
c.JupyterHub.services = [{{"name": "dora-lab-test", "api_token": settings["token"]}}]
c.JupyterHub.load_roles = [
    {{
        "name": "dora-lab-test",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "list:users"],
        "services": ["dora-lab-test"],
    }}
]
c.Spawner.cmd = [settings["singleuser"]]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = settings["environment"]
"""


@dataclass
class Hub:
    """A running JupyterHub: its public URL and the admin token of the test's service."""

    url: str
    token: str
    log: Path

    def api(self, method: str, path: str, **kwargs):
        """Call the hub's REST API (/hub/api/...) with the service token; return the requests Response."""
        import requests

        response = requests.request(
            method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"}, timeout=60, **kwargs
        )
        return response

    def start_servers(self, names: list[str], timeout: float = 240) -> None:
        """Create the hub users `names` if needed, start their single-user servers at once, wait until all answer."""
        for name in names:
            if self.api("GET", f"/users/{name}").status_code == 404:
                self.api("POST", f"/users/{name}").raise_for_status()
            response = self.api("POST", f"/users/{name}/server")
            if response.status_code not in (201, 202, 400):  # 400: already running
                pytest.fail(f"could not start {name}'s server: {response.status_code} {response.text}")
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            waiting = [
                name
                for name in waiting
                if not self.api("GET", f"/users/{name}").json()["servers"].get("", {}).get("ready")
            ]
            if waiting and time.monotonic() > deadline:
                pytest.fail(f"servers of {waiting} not ready within {timeout:.0f} s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)

    def user_token(self, name: str) -> str:
        """Issue an API token for hub user `name` (what a student would create on the hub's token page)."""
        response = self.api("POST", f"/users/{name}/tokens", json={"note": "dora-lab hub test", "expires_in": 3600})
        response.raise_for_status()
        return response.json()["token"]

    def servers(self, names: list[str]) -> list[UserServer]:
        """Start the single-user servers of `names`; return a client for each, authenticated as that user."""
        self.start_servers(names)
        return [UserServer(hub_url=self.url, name=name, token=self.user_token(name)) for name in names]


@dataclass
class UserServer:
    """One user's single-user server, reached through the hub's proxy with that user's token."""

    hub_url: str
    name: str
    token: str

    @property
    def base(self) -> str:
        return f"{self.hub_url}/user/{self.name}"

    def request(self, method: str, path: str, **kwargs):
        """Call the single-user server at `path` (e.g. /api/contents/...) as this user; return the Response."""
        import requests

        return requests.request(
            method, f"{self.base}{path}", headers={"Authorization": f"token {self.token}"}, timeout=120, **kwargs
        )

    def read_notebook(self, path: str) -> dict:
        """Return the notebook JSON at `path` (relative to the user's home) through the contents API."""
        response = self.request("GET", f"/api/contents/{path}", params={"content": 1})
        response.raise_for_status()
        return response.json()["content"]

    def save_notebook(self, path: str, notebook: dict) -> None:
        """Save `notebook` at `path` through the contents API, as JupyterLab's Save does."""
        response = self.request("PUT", f"/api/contents/{path}", json={"type": "notebook", "content": notebook})
        response.raise_for_status()

    def read_file(self, path: str) -> str:
        """Return the text file at `path` (relative to the user's home) through the contents API."""
        response = self.request("GET", f"/api/contents/{path}", params={"content": 1, "type": "file"})
        response.raise_for_status()
        return response.json()["content"]

    def terminal(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Type `command` into a new JupyterLab terminal of this user; return its exit status and what it printed.

        The terminal is the server's shell (terminado), as an instructor would open one.
        """
        import websocket

        response = self.request("POST", "/api/terminals")
        response.raise_for_status()
        name = response.json()["name"]
        marker = secrets.token_hex(6)
        socket = websocket.create_connection(
            f"{self.base.replace('http', 'ws', 1)}/terminals/websocket/{name}",
            header=[f"Authorization: token {self.token}"],
            timeout=timeout,
        )
        try:
            # What the command prints lies between two markers that only a run of the line can print: the typed
            # line's own echo shows them split by quotes and with `$?` unexpanded.
            line = f"stty -echo; PS1=''; echo {marker}''{marker}; {command}; echo {marker}-$?-{marker}"
            socket.send(json.dumps(["stdin", line + "\r"]))
            output, deadline = "", time.monotonic() + timeout
            pattern = re.compile(rf"{marker}-(\d+)-{marker}")
            while not pattern.search(output):
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.name}'s terminal: {command!r} did not finish in {timeout:.0f} s:\n{output}")
                socket.settimeout(max(1.0, deadline - time.monotonic()))
                message = json.loads(socket.recv())
                if message[0] == "stdout":
                    output += message[1]
        finally:
            socket.close()
            self.request("DELETE", f"/api/terminals/{name}")
        status = int(pattern.search(output).group(1))
        # Terminal output: colour and title escapes, CRLF line ends, and CRs where a long typed line wraps.
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", output[: pattern.search(output).start()])
        text = text.replace("\r\n", "\n").replace("\r", "")
        return status, text.split(f"{marker}{marker}", 1)[-1].removeprefix("\n")


def _hidden_interpreter() -> tuple[Path, Path] | None:
    """Return (the closed folder, the interpreter's prefix in it) when other users cannot reach this Python, else None.

    Here Python is installed under /root (mode 0700): the venv's interpreter is out of the users' reach.
    """
    prefix = Path(sys.base_prefix).resolve()
    for folder in [*reversed(prefix.parents), prefix]:
        if not folder.stat().st_mode & 0o001:
            return folder, prefix
    return None


def _reachable_interpreter(command: list[str], stash: Path) -> list[str]:
    """Wrap `command` so that it and its children see the interpreter's folder even where it lives in a closed home.

    The command runs in a private mount namespace (util-linux unshare) in which the closed folder is an empty,
    enterable tmpfs with only the interpreter's prefix bound back into it: the grading sandbox's view of /root. Nothing
    changes outside that namespace, and it ends with its last process.
    """
    hidden = _hidden_interpreter()
    if hidden is None:
        return command
    closed, prefix = hidden
    stash.mkdir(mode=0o700, exist_ok=True)
    script = (
        f"set -e; mount --bind '{prefix}' '{stash}'; mount -t tmpfs -o mode=0755 tmpfs '{closed}'; "
        f"mkdir -p '{prefix}'; mount --bind '{stash}' '{prefix}'; exec \"$@\""
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


@contextlib.contextmanager
def running_hub(workdir: Path, users: list[str], environment: dict) -> Iterator[Hub]:
    """Run JupyterHub on a free loopback port until the block ends; stop it, its proxy and every server then.

    Args:
        workdir: the hub's folder (config, database, cookie secret, log).
        users: the system user names allowed to log in.
        environment: Spawner.environment of every single-user server.

    Yields:
        The running Hub.
    """
    proxy = find_proxy()
    if proxy is None:
        pytest.fail("configurable-http-proxy not found: run `make hub-proxy` (npm install into .venv/node)")
    port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(32)
    settings = {
        "url": f"http://127.0.0.1:{port}",
        "hub_url": f"http://127.0.0.1:{hub_port}",
        "proxy_api_url": f"http://127.0.0.1:{proxy_api_port}",
        "proxy": str(proxy),
        "workdir": str(workdir),
        "users": users,
        "token": token,
        "singleuser": str(VENV_BIN / "jupyterhub-singleuser"),
        "environment": environment,
    }
    workdir.mkdir(mode=0o700, exist_ok=True)  # the hub's database and cookie secret: root's only
    config = workdir / "jupyterhub_config.py"
    config.write_text(_HUB_CONFIG.format(settings=json.dumps(settings)))
    log_path = workdir / "jupyterhub.log"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    hub = Hub(url=settings["url"], token=token, log=log_path)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            _reachable_interpreter([str(VENV_BIN / "jupyterhub"), "-f", str(config)], workdir / "interpreter"),
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if hub.api("GET", "/").status_code == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterHub did not start:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.5)
            yield hub
        finally:
            # SIGTERM: the hub stops every single-user server (cleanup_servers) and its proxy, then exits.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
