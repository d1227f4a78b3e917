"""A Littlest JupyterHub server's disk for the hub test: TLJH's layout, built in one folder of this machine.

TLJH keeps the users' environment in /opt/tljh/user, its own settings in /opt/tljh/config and the homes in
/home/jupyter-<name>; docs/deploying.md adds the exchange (/srv/nbgrader/exchange) and SST-2 (/srv/data/sst2). A
`TljhServer` builds those in this run's folder and shows them at those paths, beside the system's own folders (/usr,
/etc), to the hub and everything it starts: a mount namespace made by bubblewrap. Nothing else of this machine is
there (not the project folder, not /root, not the host's /tmp), so the files of deploy/ run as the guide installs
them, and a student who searches the disk searches what a TLJH server holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.install import DEPLOY, VENV, build_wheel, copy_environment

USER_ENV = Path("/opt/tljh/user")
"""The users' environment: the lab's wheel and its dependencies."""
HUB_CONFIG_DIR = Path("/opt/tljh/config")
"""TLJH's settings (jupyterhub_config.d/), here also the hub's database and log (root's only)."""
HOMES = Path("/home")
EXCHANGE = Path("/srv/nbgrader/exchange")
DATA = Path("/srv/data/sst2")
HUB_NODE = Path("/opt/tljh/hub/node")
"""configurable-http-proxy's npm prefix, when it is not a system program (TLJH's own proxy is traefik)."""
HARNESS = Path("/opt/tljh/test")
"""The test's own Jupyter settings, on each server's JUPYTER_CONFIG_PATH."""
SYSTEM = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""The system's folders: shown as they are (read-only), links as links."""
TERMINAL_SETTINGS = """\
# Terminals start bash as it is: Debian's login shell (/etc/profile) would reset PATH to the system's, where Ubuntu's
# (TLJH's system) keeps the environment's bin/ that the spawner put first.
c = get_config()  # noqa: F821
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}
"""


def system_name(hub_name: str) -> str:
    """Return TLJH's system account of hub user `hub_name`: jupyter-<name> (as TLJH names it below 26 characters)."""
    return f"jupyter-{hub_name}"


@dataclass
class TljhServer:
    """The server's disk: this run's folders (`root` on this machine) at TLJH's paths, and how to run in that view."""

    root: Path
    proxy: Path
    """configurable-http-proxy, as the hub sees it."""
    extra: dict[Path, Path] = field(default_factory=dict)
    """More folders to show, {path seen: folder here} (read-only)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """What building it cost, by step."""

    @property
    def folders(self) -> dict[Path, Path]:
        """{path seen: folder here} of every folder the run made."""
        return {
            USER_ENV: self.root / "user",
            HUB_CONFIG_DIR: self.root / "config",
            HOMES: self.root / "home",
            Path("/srv"): self.root / "srv",
            HARNESS: self.root / "test",
        }

    def host(self, path: Path) -> Path:
        """Return where `path`, as the server sees it, is on this machine."""
        for seen, here in self.folders.items():
            if path == seen or seen in path.parents:
                return here / path.relative_to(seen)
        raise ValueError(f"{path} is not in one of the run's folders {sorted(map(str, self.folders))}")

    def view(self, argv: list[str]) -> list[str]:
        """Return `argv` run in the server's view of the disk (bubblewrap, as root: a mount namespace, nothing more)."""
        args = ["bwrap", "--die-with-parent"]
        for name in SYSTEM:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--dev-bind", "/dev", "/dev", "--bind", "/proc", "/proc", "--ro-bind", "/sys", "/sys"]
        args += ["--perms", "1777", "--tmpfs", "/tmp"]
        binds = [("--ro-bind" if seen == USER_ENV else "--bind", here, seen) for seen, here in self.folders.items()]
        binds += [("--ro-bind", here, seen) for seen, here in self.extra.items()]
        interpreter = Path(sys.base_prefix).resolve()  # the venv's Python, wherever it is installed
        if not any(interpreter.is_relative_to(Path("/") / name) for name in SYSTEM):
            binds.append(("--ro-bind", interpreter, interpreter))
        # The folders that lead to them, open to all as on a server (bwrap would make them 0700).
        targets = {seen for _, _, seen in binds}
        parents = {parent for seen in targets for parent in seen.parents if parent != Path("/")} - targets
        for parent in sorted(parents, key=lambda path: len(path.parts)):
            args += ["--perms", "0755", "--dir", str(parent)]
        for kind, here, seen in binds:
            args += [kind, str(here), str(seen)]
        return [*args, "--chdir", str(HUB_CONFIG_DIR), "--", *argv]


def _timed(server: TljhServer, step: str, started: float) -> None:
    server.seconds[step] = round(time.monotonic() - started, 1)


def build_tljh_server(root: Path, proxy: Path, data_dir: Path) -> TljhServer:
    """Build the server's folders in `root` as docs/deploying.md sets a TLJH server up.

    The users' environment is .venv's packages with the lab installed from its wheel (no solutions/), plus the
    guide's Jupyter settings and nbgrader_config.py; the hub's settings file is deploy/tljh's; the exchange is
    writable by all; SST-2 is a read-only copy.

    Args:
        root: an empty folder on .venv's filesystem (the environment is a hard-link copy).
        proxy: configurable-http-proxy on this machine.
        data_dir: SST-2 on this machine.
    """
    server = TljhServer(root=root, proxy=proxy)
    for here in server.folders.values():
        here.mkdir(mode=0o755, exist_ok=True)
    server.host(HUB_CONFIG_DIR).chmod(0o700)  # the hub's database and cookie secret: root's only
    started = time.monotonic()
    wheel = build_wheel(root / "wheel")
    _timed(server, "build the wheel", started)
    started = time.monotonic()
    server.host(USER_ENV).rmdir()
    copy_environment(server.host(USER_ENV), wheel, USER_ENV)
    shutil.copyfile(DEPLOY / "nbgrader_config.py", server.host(USER_ENV / "etc/jupyter/nbgrader_config.py"))
    _timed(server, "copy the environment, install the wheel and the settings", started)
    started = time.monotonic()
    settings = server.host(HUB_CONFIG_DIR / "jupyterhub_config.d")
    settings.mkdir()
    shutil.copy(DEPLOY / "tljh" / "jupyterhub_config.d" / "dora-lab.py", settings)
    exchange = server.host(EXCHANGE)
    exchange.mkdir(parents=True)
    exchange.chmod(0o777)  # nbgrader's exchange: everyone writes, nbgrader guards the course folders inside
    shutil.copytree(data_dir, server.host(DATA))
    subprocess.run(["chmod", "-R", "a=rX", str(server.host(DATA))], check=True)
    (server.host(HARNESS) / "jupyter").mkdir()
    (server.host(HARNESS) / "jupyter" / "jupyter_server_config.py").write_text(TERMINAL_SETTINGS)
    if not proxy.resolve().is_relative_to("/usr"):
        server.extra[HUB_NODE] = proxy.parent.parent  # its npm prefix: bin/ and lib/node_modules/
        server.proxy = HUB_NODE / "bin" / proxy.name
    _timed(server, "exchange, data and hub settings", started)
    return server


def same_filesystem_folder() -> Path:
    """Return a folder for the run on .venv's filesystem (the environment is copied as hard links): the temp folder
    when it is there, else the project's outputs/ (git-ignored)."""
    import tempfile

    temp = Path(tempfile.gettempdir())
    if temp.stat().st_dev == VENV.stat().st_dev:
        return temp
    outputs = VENV.parent / "outputs"
    outputs.mkdir(exist_ok=True)
    return outputs
