"""Why bubblewrap cannot build sandboxes on this machine: the case, what shows it, and the fix for that case.

`diagnose` runs bwrap once with the namespaces and the kinds of mount a sandbox uses; when that fails it reads what
the machine shows and names the case. bwrap's messages are its own (bubblewrap.c, network.c):

* ``bwrap`` not on PATH: **bwrap missing** (install the distribution's package);
* ``Unknown option --disable-userns``: **bwrap too old** (that option came with bubblewrap 0.8.0);
* ``kernel.apparmor_restrict_unprivileged_userns = 1`` (Ubuntu 23.10 and later) and a normal grader, where bwrap says
  ``loopback: Failed RTM_NEWADDR: Operation not permitted`` or ``setting up uid map: Permission denied``:
  **AppArmor restricts user namespaces** (the sysctl, an AppArmor profile for bwrap, or root);
* ``kernel.unprivileged_userns_clone = 0`` (Debian's switch), where bwrap says ``No permissions to create a new
  namespace``: **unprivileged user namespaces disabled** (the sysctl, or root);
* a ``/proc/sys/user/max_*_namespaces`` at 0, where bwrap says ``... max_*_namespaces exceeded (ENOSPC)``:
  **namespaces limited to 0** (the sysctl, or root for the user namespace's limit);
* ``... (ENOSPC)`` from a process whose /proc/self/uid_map is not the whole identity map: **already inside a user
  namespace that allows no other** (a sandbox such as ``bwrap --disable-userns``, a rootless container: grade
  outside it);
* a container (``/.dockerenv``, ``/run/.containerenv``, a Kubernetes service account or ``kubepods`` in
  /proc/1/cgroup), where none of the above explains it: **the container refuses namespaces** (its seccomp filter,
  AppArmor profile, missing CAP_SYS_ADMIN or masked /proc: the pod's or container's settings, or root with SYS_ADMIN);
* anything else: **unrecognised**, with bwrap's message.

Everything is read below `Machine.root` and bwrap is looked up in `Machine.path`, so a test shows the diagnosis a
fake bwrap and a fake /proc without changing the machine.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import remedies
from labhelpers.grading.sandbox.capability import ISOLATION, system_links

MISSING = "bwrap missing"
TOO_OLD = "bwrap too old"
APPARMOR = "AppArmor restricts user namespaces"
USERNS_OFF = "unprivileged user namespaces disabled"
LIMIT_ZERO = "namespaces limited to 0"
NESTED = "already inside a user namespace that allows no other"
CONTAINER = "the container refuses namespaces"
UNRECOGNISED = "unrecognised"
CASES = (MISSING, TOO_OLD, APPARMOR, USERNS_OFF, LIMIT_ZERO, NESTED, CONTAINER, UNRECOGNISED)
"""Every case the diagnosis names (the first words of its message)."""
CAP_SYS_ADMIN = 21
"""The capability bit that mounting and creating namespaces as root need (linux/capability.h)."""


class SandboxUnavailable(LabGradingError):
    """bubblewrap cannot isolate student code here: grading stops before it starts (the message has the fix)."""


@dataclass(frozen=True)
class Machine:
    """What the diagnosis reads: this machine, or a folder of fakes standing for it.

    Attributes:
        root: where /proc, /etc/os-release and the container markers are read ("/" for this machine).
        path: the PATH bwrap is looked up in (None: the grader's).
        as_root: whether the grader is root (None: this process's effective uid says).
        environ: the grader's environment (None: this process's); a pod has KUBERNETES_SERVICE_HOST.
    """

    root: Path = Path("/")
    path: str | None = None
    as_root: bool | None = None
    environ: Mapping[str, str] | None = None

    @property
    def is_root(self) -> bool:
        return os.geteuid() == 0 if self.as_root is None else self.as_root

    def read(self, path: str) -> str | None:
        """Return the text of the machine's file at absolute `path`, or None when it cannot be read."""
        try:
            return (Path(self.root) / path.lstrip("/")).read_text(errors="replace")
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return (Path(self.root) / path.lstrip("/")).exists()

    def sysctl(self, name: str) -> str | None:
        """Return a sysctl's value ("kernel.unprivileged_userns_clone"), read from /proc/sys; None when absent."""
        text = self.read("/proc/sys/" + name.replace(".", "/"))
        return text.strip() if text is not None else None


@dataclass(frozen=True)
class Isolation:
    """Whether bubblewrap isolates student code here; if not, the case, what showed it and the fix.

    Attributes:
        case: "" when bwrap works; else one of CASES.
        bwrap: the bwrap program found, or None.
        said: bwrap's own message ("" when it was not run or said nothing).
        seen: what else the machine showed, one fact each ("kernel.apparmor_restrict_unprivileged_userns = 1").
        fix: what to do, for this case (several lines).
        lost: what grading without bwrap (--no-sandbox) loses, for this grader.
    """

    case: str
    bwrap: str | None
    said: str = ""
    seen: tuple[str, ...] = ()
    fix: str = ""
    lost: str = ""

    @property
    def works(self) -> bool:
        return not self.case

    def message(self) -> str:
        """Return the refusal for the instructor: the case, what showed it, the fix, and --no-sandbox's cost."""
        if self.works:
            return ""
        lines = [f"bubblewrap cannot isolate student code on this machine: {self.case}."]
        if self.said:
            lines.append(f"bwrap said: {self.said}")
        if self.seen:
            lines.append("Seen: " + "; ".join(self.seen) + ".")
        lines += ["Fix: " + self.fix, "Then run the same `dora-lab grade` command again."]
        lines.append(
            "Last resort: add --no-sandbox to grade without isolation. Student code then runs "
            f"{self.lost}; every status and feedback page says so."
        )
        return "\n".join(lines)


@dataclass
class _Facts:
    """What the machine shows beside bwrap's message (gathered once, read by each case's test)."""

    machine: Machine
    container: str | None = None
    seen: list[str] = field(default_factory=list)

    def note(self, fact: str) -> None:
        self.seen.append(fact)


@functools.cache
def isolation() -> Isolation:
    """Return whether bubblewrap isolates student code on this machine (diagnosed once per process)."""
    return diagnose()


def problem() -> str:
    """Return why sandboxes cannot be built here, with the fix; "" when bubblewrap works."""
    return isolation().message()


def require_isolation() -> str:
    """Return the bwrap program; raise SandboxUnavailable, saying why and what to do, when it cannot isolate here."""
    found = isolation()
    if not found.works:
        raise SandboxUnavailable(found.message())
    assert found.bwrap is not None
    return found.bwrap


def diagnose(machine: Machine = Machine()) -> Isolation:
    """Run bwrap as a sandbox would; when it fails, name the case from what the machine shows and give its fix.

    Args:
        machine: this machine, or a folder of fakes (a fake bwrap on `path`, fake /proc files under `root`).

    Returns:
        The Isolation: `works`, or the case, bwrap's message, the facts seen and the fix.
    """
    lost = remedies.lost(machine.is_root)
    facts = _Facts(machine, container=_container(machine))
    if facts.container:
        facts.note(f"running in a {facts.container}")
    bwrap = shutil.which("bwrap", path=machine.path if machine.path is not None else os.environ.get("PATH"))
    if bwrap is None:
        return Isolation(MISSING, None, "", tuple(facts.seen), remedies.install(machine, facts.container), lost)
    said = _try_bwrap(bwrap, machine.is_root)
    if said is None:
        return Isolation("", bwrap)
    case, fix = _classify(facts, bwrap, said)
    return Isolation(case, bwrap, said, tuple(facts.seen), fix, lost)


def _try_bwrap(bwrap: str, as_root: bool) -> str | None:
    """Run bwrap with a sandbox's namespaces and kinds of mount; return None when it works, else its message."""
    user = [] if as_root else ["--unshare-user", "--disable-userns"]
    mounts = ["--ro-bind", "/usr", "/usr", *system_links(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    try:
        completed = subprocess.run(
            [bwrap, *ISOLATION, *user, *mounts, "--", "/usr/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
            env={},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not be run ({error})"
    if completed.returncode == 0:
        return None
    lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {completed.returncode}, no message"


def _classify(facts: _Facts, bwrap: str, said: str) -> tuple[str, str]:
    """Return (case, fix) for bwrap's message `said`, noting in `facts` what else showed the case."""
    machine = facts.machine
    if "Unknown option" in said:
        version = _version(bwrap)
        facts.note(f"{bwrap} is {version or 'of an unknown version'}")
        return TOO_OLD, remedies.upgrade(machine, facts.container)
    if not machine.is_root:
        apparmor = machine.sysctl("kernel.apparmor_restrict_unprivileged_userns")
        if apparmor == "1":
            facts.note("kernel.apparmor_restrict_unprivileged_userns = 1 (/proc/sys/kernel)")
            return APPARMOR, remedies.apparmor(bwrap, facts.container)
        if machine.sysctl("kernel.unprivileged_userns_clone") == "0":
            facts.note("kernel.unprivileged_userns_clone = 0 (/proc/sys/kernel)")
            return USERNS_OFF, remedies.userns_clone(facts.container)
    zero = _zero_limits(machine)
    if zero:
        facts.note(", ".join(f"{name} = 0" for name in zero) + " (/proc/sys/user)")
        return LIMIT_ZERO, remedies.namespace_limits(zero, machine.is_root, facts.container)
    mapping = " ".join((machine.read("/proc/self/uid_map") or "0 0 4294967295").split())
    if "(ENOSPC)" in said and mapping != "0 0 4294967295":
        facts.note(f"this process is in a user namespace (/proc/self/uid_map: {mapping})")
        return NESTED, remedies.nested()
    if facts.container:
        facts.seen += _confinement(machine)
        return CONTAINER, remedies.container(facts.container, machine.is_root, "mount proc" in said)
    facts.note(
        "not in a container; as root, no unprivileged user namespace is needed"
        if machine.is_root
        else "not in a container; the user-namespace sysctls allow them"
    )
    return UNRECOGNISED, remedies.unrecognised(bwrap, machine.is_root)


def _zero_limits(machine: Machine) -> list[str]:
    """Return the user.max_*_namespaces sysctls at 0 (the user namespace's only matters to a normal grader)."""
    kinds = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"]
    names = [f"user.max_{kind}_namespaces" for kind in kinds if kind != "user" or not machine.is_root]
    return [name for name in names if machine.sysctl(name) == "0"]


def _container(machine: Machine) -> str | None:
    """Return "Kubernetes pod", "Docker container", "Podman container", "container", or None outside one."""
    environ = os.environ if machine.environ is None else machine.environ
    cgroup = machine.read("/proc/1/cgroup") or ""
    if (
        "KUBERNETES_SERVICE_HOST" in environ
        or machine.exists("/var/run/secrets/kubernetes.io")
        or "kubepods" in cgroup
    ):
        return "Kubernetes pod"
    if machine.exists("/.dockerenv") or "docker" in cgroup:
        return "Docker container"
    if machine.exists("/run/.containerenv") or "libpod" in cgroup:
        return "Podman container"
    if any(word in cgroup for word in ("containerd", "lxc")):
        return "container"
    return None


def _confinement(machine: Machine) -> list[str]:
    """Return what confines this process, one fact each: a seccomp filter, no CAP_SYS_ADMIN, a read-only /proc/sys."""
    facts = []
    status = machine.read("/proc/self/status") or ""
    fields = {name: value.strip() for name, _, value in (line.partition(":") for line in status.splitlines())}
    if fields.get("Seccomp", "0") not in ("", "0"):
        facts.append("a seccomp filter is on (Seccomp: " + fields["Seccomp"] + " in /proc/self/status)")
    if fields.get("CapEff") and not int(fields["CapEff"], 16) >> CAP_SYS_ADMIN & 1:
        facts.append("no CAP_SYS_ADMIN (CapEff in /proc/self/status)")
    for line in (machine.read("/proc/self/mounts") or "").splitlines():
        words = line.split()
        if len(words) > 3 and words[1] == "/proc/sys" and "ro" in words[3].split(","):
            facts.append("/proc/sys is mounted read-only")
    return facts


def _version(bwrap: str) -> str:
    """Return `bwrap --version`'s answer ("bubblewrap 0.6.1"), or "" when it gives none."""
    try:
        completed = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10, env={})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip()
