"""A real JupyterHub on loopback for the tests, run as on The Littlest JupyterHub: TLJH's accounts and layout.

The hub and every server it starts run in a TLJH server's view of the disk (tests/support/tljh.py). Hub user `ana`
logs in with the hub's password and her server runs as the system account `jupyter-ana`, home /home/jupyter-ana, as
TLJH's spawner names them. `local_users` creates and removes the accounts; the hub, its proxy and every single-user
server stop when `running_hub` exits.
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
from tests.support.tljh import HARNESS, HOMES, HUB_CONFIG_DIR, USER_ENV, TljhServer, system_name

USER_COMMENT = "dora-lab hub test user pid "
"""The GECOS field of the accounts the tests create, then the creating process's id and the run's folder: how a
leftover is recognised."""
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
    """A hub user made for one run, with TLJH's system account.

    Attributes:
        name: the hub's name (log-in, /user/<name>/ URLs), e.g. doraab12ana.
        account: the system account the server runs as, jupyter-<name>; nbgrader's student id.
        home: the home as the user's server sees it, /home/jupyter-<name>.
        host_home: where this machine keeps it.
    """

    name: str
    account: str
    home: Path
    host_home: Path


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
    """Stop whatever still runs as the test account `name` (its own processes, by id), then delete the account."""
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
    """Delete the test accounts, and their runs' folders, that a run killed before its clean-up left behind."""
    for entry in pwd.getpwall():
        owner, _, root = entry.pw_gecos.removeprefix(USER_COMMENT).partition(" ")
        if entry.pw_gecos.startswith(USER_COMMENT) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _remove_user(entry.pw_name)
            if Path(root).name.startswith("dora-lab-hub-"):
                shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def local_users(roles: list[str], server: TljhServer) -> Iterator[dict[str, LocalUser]]:
    """Create one hub user per role with TLJH's system account and home (mode 0750, as TLJH leaves it); delete them.

    Args:
        roles: short role names, e.g. ["inst", "ana", "ben"]; each becomes part of a user name.
        server: the server whose /home holds the homes.

    Yields:
        {role: LocalUser}.
    """
    remove_leftover_users()
    tag = secrets.token_hex(2)
    users: dict[str, LocalUser] = {}
    try:
        for role in roles:
            name = f"dora{tag}{role}"
            account = system_name(name)
            home = HOMES / account
            subprocess.run(
                ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group"]
                + ["--comment", f"{USER_COMMENT}{os.getpid()} {server.root}", account],
                check=True,
                capture_output=True,
            )
            users[role] = LocalUser(name=name, account=account, home=home, host_home=server.host(home))
            entry = pwd.getpwnam(account)
            users[role].host_home.mkdir(mode=0o750)
            os.chown(users[role].host_home, entry.pw_uid, entry.pw_gid)
        yield users
    finally:
        for user in users.values():
            _remove_user(user.account)


_HUB_CONFIG = """\
# JupyterHub for the DoRA Lab hub test, as on The Littlest JupyterHub: TLJH's accounts (hub user ana is the system
# user jupyter-ana), its user environment, and then its jupyterhub_config.d/ (the guide's file). Loopback only.
import json
import pwd

from jupyterhub.spawner import LocalProcessSpawner

settings = json.loads(SETTINGS)
c = get_config()  # noqa: F821


class TljhAccountSpawner(LocalProcessSpawner):
    \"\"\"Local processes under TLJH's accounts: hub user `name` runs as system user jupyter-<name>.

    TLJH's UserCreatingSpawner (a SystemdSpawner) names the accounts so and sets USER, HOME and SHELL from them.
    \"\"\"

    def make_preexec_fn(self, name):
        return super().make_preexec_fn("jupyter-" + name)

    def user_env(self, env):
        account = pwd.getpwnam("jupyter-" + self.user.name)
        env.update(USER=account.pw_name, HOME=account.pw_dir, SHELL=account.pw_shell)
        return env


c.JupyterHub.spawner_class = TljhAccountSpawner
c.JupyterHub.bind_url = settings["url"]
c.JupyterHub.hub_bind_url = settings["hub_url"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [settings["proxy"]]
c.ConfigurableHTTPProxy.debug = False
c.JupyterHub.db_url = "sqlite:///" + settings["workdir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["workdir"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = settings["workdir"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
# JupyterHub's own shared-password log-in: TLJH's accounts have no password of their own (TLJH's default
# authenticator keeps its passwords in the hub, not in the system).
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = settings["password"]
c.Authenticator.allowed_users = set(settings["users"])
c.JupyterHub.services = [{"name": "dora-lab-test", "api_token": settings["token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "dora-lab-test",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "list:users"],
        "services": ["dora-lab-test"],
    }
]
c.Spawner.cmd = [settings["singleuser"]]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = settings["environment"]
# TLJH loads its jupyterhub_config.d/ last: the lab's settings for every server (deploy/tljh/).
for extra in sorted(settings["config_d"]):
    load_subconfig(extra)  # noqa: F821
"""


@dataclass
class Hub:
    """A running JupyterHub: its public URL, the admin token of the test's service and the users' log-in password."""

    url: str
    token: str
    password: str
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
                pytest.fail(
                    f"could not start {name}'s server: {response.status_code} {response.text}\n"
                    f"{self.log.read_text()[-4000:]}"
                )
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

    def restart_server(self, name: str, timeout: float = 120) -> None:
        """Stop `name`'s server, as the hub's control panel does, and start it again; wait until it answers."""
        self.api("DELETE", f"/users/{name}/server").raise_for_status()
        deadline = time.monotonic() + timeout
        while self.api("GET", f"/users/{name}").json()["servers"]:
            if time.monotonic() > deadline:
                pytest.fail(f"{name}'s server did not stop within {timeout:.0f} s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)
        self.start_servers([name], timeout)

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


@contextlib.contextmanager
def running_hub(server: TljhServer, users: list[str], environment: dict) -> Iterator[Hub]:
    """Run JupyterHub in the server's view on a free loopback port until the block ends; stop it and its servers then.

    Args:
        server: the TLJH server (its user environment runs the hub and every server).
        users: the hub names allowed to log in.
        environment: the servers' environment before TLJH's jupyterhub_config.d/ adds the lab's settings.

    Yields:
        The running Hub.
    """
    port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    token, password = secrets.token_hex(32), secrets.token_urlsafe(18)
    config_d = server.host(HUB_CONFIG_DIR / "jupyterhub_config.d")
    settings = {
        "url": f"http://127.0.0.1:{port}",
        "hub_url": f"http://127.0.0.1:{hub_port}",
        "proxy_api_url": f"http://127.0.0.1:{proxy_api_port}",
        "proxy": str(server.proxy),
        "workdir": str(HUB_CONFIG_DIR),
        "users": users,
        "token": token,
        "password": password,
        "singleuser": str(USER_ENV / "bin" / "jupyterhub-singleuser"),
        "environment": {"JUPYTER_CONFIG_PATH": str(HARNESS / "jupyter"), **environment},
        "config_d": [str(HUB_CONFIG_DIR / "jupyterhub_config.d" / path.name) for path in config_d.glob("*.py")],
    }
    config = server.host(HUB_CONFIG_DIR / "jupyterhub_config.py")
    config.write_text(_HUB_CONFIG.replace("SETTINGS", repr(json.dumps(settings)), 1))
    log_path = server.host(HUB_CONFIG_DIR / "jupyterhub.log")
    hub = Hub(url=settings["url"], token=token, password=password, log=log_path)
    # The hub's own environment: TLJH's systemd unit gives it little more than PATH.
    env = {"PATH": f"{USER_ENV / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(HUB_CONFIG_DIR)}
    argv = [str(USER_ENV / "bin" / "jupyterhub"), "-f", str(HUB_CONFIG_DIR / "jupyterhub_config.py")]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            server.view(argv), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
            # SIGTERM to bubblewrap and the hub: the hub stops every single-user server (cleanup_servers) and its
            # proxy, then exits, and bubblewrap with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # The hub starts its proxy in a session of its own: when the hub ends before its cleanup stops the
            # proxy, the proxy outlives the test. It is found by its API port.
            _kill_processes_naming(f"--api-port {proxy_api_port}")


def _kill_processes_naming(marker: str) -> None:
    """Kill every process whose command line contains `marker`."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(process.info["cmdline"] or []):
                process.kill()
