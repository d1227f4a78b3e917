"""What this machine gives the sandboxes: its system tools, root or not, the namespaces every sandbox unshares.

Whether bubblewrap works here, and why not, is diagnosis's concern.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from labhelpers.errors import LabGradingError

TOOLS_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
"""Where the system tools (prlimit, setpriv, env) are looked up, whatever the grader's PATH."""
# Namespaces: all of them (a network namespace has only its own loopback). The pid namespace and
# --die-with-parent make killing bwrap, or the grader dying, end every process of the sandbox.
ISOLATION = (
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--hostname",
    "sandbox",
    "--die-with-parent",
    "--new-session",
)
"""bwrap's namespace arguments of every sandbox, and of the trial run that says whether bwrap works here."""


@functools.cache
def tool(name: str) -> str:
    """Return the absolute path of a system tool (prlimit, setpriv, env from util-linux and coreutils)."""
    found = shutil.which(name, path=TOOLS_PATH)
    if found is None:
        raise LabGradingError(
            f"`{name}` was not found in {TOOLS_PATH}: grading needs util-linux (prlimit, setpriv) and coreutils "
            f"(env); install them (`apt-get install util-linux coreutils`)."
        )
    return found


def is_root() -> bool:
    """True when the grader runs as root: then each slot runs as its own unprivileged uid."""
    return os.geteuid() == 0


@functools.cache
def users_may_unshare() -> bool:
    """True when unprivileged users may create user namespaces here (then bwrap can forbid it in a sandbox)."""
    nobody = [tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    test = [shutil.which("bwrap") or "bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/usr", "/usr"]
    try:
        completed = subprocess.run([*nobody, *test, *system_links(), "--", "/usr/bin/true"], capture_output=True)
    except OSError:
        return False
    return completed.returncode == 0


def system_links() -> list[str]:
    """Return bwrap arguments recreating /bin, /lib, ... as on the host (links into /usr on merged-/usr systems)."""
    arguments = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/", name)
        if host.is_symlink():
            arguments += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            arguments += ["--ro-bind", str(host), str(host)]
    return arguments
