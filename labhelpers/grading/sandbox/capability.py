"""What this machine can do for the sandboxes: its system tools, root or not, and whether bubblewrap works here."""

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
"""bwrap's namespace arguments of every sandbox, and of the test run that says whether bwrap works here."""

LOST_AS_ROOT = (
    "student code runs as the slot's uid with the resource limits only: it can read every file other users may "
    "read (a world-readable copy of the solutions or of classmates' submissions), write to world-writable folders, "
    "reach the network and see every process"
)
LOST_AS_USER = (
    "student code runs as you with the resource limits only: it can read and write every file you can (other "
    "copies of the solutions, classmates' submissions, your home folder), reach the network and see and signal "
    "your processes"
)


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
def problem() -> str:
    """Say why sandboxes cannot be built here, what to install and what protection is lost; "" when bwrap works.

    Returns:
        "" when bubblewrap runs here; else one paragraph for the instructor.
    """
    lost = LOST_AS_ROOT if is_root() else LOST_AS_USER
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return (
            "bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap` (Debian, Ubuntu) or "
            f"`dnf install bubblewrap` (Fedora). Without it, {lost}."
        )
    user = [] if is_root() else ["--unshare-user", "--disable-userns"]
    test = [bwrap, *ISOLATION, *user, "--ro-bind", "/usr", "/usr", *system_links(), "--", "/usr/bin/true"]
    try:
        completed = subprocess.run(test, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap ({bwrap}) could not be run ({error}). Without it, {lost}."
    if completed.returncode != 0:
        reason = (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]
        return (
            f"bubblewrap cannot create its namespaces here ({reason}). Allow unprivileged user namespaces "
            "(`sysctl kernel.unprivileged_userns_clone=1` on older Debian; on Ubuntu 24.04 "
            "`sysctl kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap), or grade "
            f"as root. Without it, {lost}."
        )
    return ""


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
