"""The fix for each case of unusable bubblewrap (see diagnosis), what grading without it loses, and the words
every status and feedback page of a --no-sandbox grade carry.

Each function returns the text after "Fix: " in the refusal: the first remedy is the one that keeps the most
isolation; "grade as root" comes where it helps (root needs no unprivileged user namespace: bwrap runs privileged,
and each slot runs as its own unprivileged uid).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labhelpers.grading.sandbox.diagnosis import Machine

INSTALL = (
    (("debian", "ubuntu"), "apt-get install bubblewrap", "Debian, Ubuntu"),
    (("fedora", "rhel", "centos", "rocky", "almalinux"), "dnf install bubblewrap", "Fedora, RHEL"),
    (("opensuse", "suse", "sles"), "zypper install bubblewrap", "openSUSE"),
    (("arch",), "pacman -S bubblewrap", "Arch"),
    (("alpine",), "apk add bubblewrap", "Alpine"),
)
"""(os-release IDs, the command that installs bubblewrap, the distributions named)."""
NO_SANDBOX = "graded without a sandbox (--no-sandbox)"
"""The plain words that begin every status line and feedback notice of a submission graded without bubblewrap."""
SYSCTL_FILE = "/etc/sysctl.d/60-bwrap-userns.conf"
"""Where a sysctl that bwrap needs is kept across reboots."""
SUDO = "the same command with sudo, giving dora-lab's full path"
AS_ROOT = (
    f"or grade as root ({SUDO}): root needs no unprivileged user namespace, and each slot then runs as its own "
    "unprivileged uid"
)


def lost(as_root: bool) -> str:
    """Return what student code can do without bubblewrap, for a root or a normal grader ("as you, ...")."""
    if as_root:
        return (
            "as an unprivileged uid per slot, with the resource limits only, able to read every file other users may "
            "read (a world-readable copy of the solutions or of classmates' submissions), write to world-writable "
            "folders, reach the network and see every process"
        )
    return (
        "as you, with the resource limits only, able to read and change every file you can (this grading folder and "
        "its gradebook, other copies of the solutions, classmates' submissions, your home folder), reach the network "
        "and see and signal your processes"
    )


def _distribution(machine: Machine) -> tuple[set[str], str]:
    """Return (the IDs of /etc/os-release: ID and ID_LIKE, its PRETTY_NAME)."""
    fields = {}
    for line in (machine.read("/etc/os-release") or "").splitlines():
        name, _, value = line.partition("=")
        fields[name.strip()] = value.strip().strip("\"'")
    ids = {fields.get("ID", "").lower(), *fields.get("ID_LIKE", "").lower().split()} - {""}
    return ids, fields.get("PRETTY_NAME", fields.get("ID", ""))


def install(machine: Machine, container: str | None) -> str:
    """Return how to install bubblewrap here: this distribution's command, or each distribution's."""
    ids, name = _distribution(machine)
    known = [(command, names) for family, command, names in INSTALL if ids & set(family)]
    if known:
        how = f"install bubblewrap, the package that provides bwrap: `sudo {known[0][0]}` (this machine: {name})"
    else:
        how = "install bubblewrap, the package that provides bwrap: " + ", ".join(
            f"`sudo {command}` ({names})" for _, command, names in INSTALL
        )
    if container:
        how += (
            f". In a {container}, install it in the image the grader runs from (e.g. `RUN apt-get install -y "
            "bubblewrap` in its Dockerfile): a package installed in a running container is gone when it restarts"
        )
    return how + ". bwrap is looked up on PATH."


def upgrade(machine: Machine, container: str | None) -> str:
    """Return how to replace a bwrap older than 0.8.0 (which lacks --disable-userns)."""
    _, name = _distribution(machine)
    return (
        f"the sandbox needs bwrap's --disable-userns, added in bubblewrap 0.8.0 (Debian 12 ships 0.8.0, Ubuntu 24.04 "
        f"0.9.0); this machine ({name or 'unknown distribution'}) has an older one. Install bubblewrap 0.8.0 or later "
        f"ahead of it on PATH ({'in the image, ' if container else ''}from a newer release of the distribution or "
        f"built from its source with meson); or grade as root ({SUDO}): root's sandboxes do not use that option."
    )


def _on_host(container: str | None) -> str:
    return f" on the host: a {container} shares the host's kernel and cannot change its sysctls" if container else ""


def apparmor(bwrap: str, container: str | None) -> str:
    """Return the three ways past Ubuntu's AppArmor restriction: a profile for bwrap, the sysctl, root."""
    program = os.path.realpath(bwrap)
    profile = "\n".join(
        [
            "give bwrap a profile: write /etc/apparmor.d/bwrap containing",
            "        abi <abi/4.0>,",
            "        include <tunables/global>",
            f"        profile bwrap {program} flags=(unconfined) {{",
            "          userns,",
            "          include if exists <local/bwrap>",
            "        }",
            "      and load it: `sudo apparmor_parser -r /etc/apparmor.d/bwrap`",
        ]
    )
    sysctl = (
        "lift the restriction for every program: `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, "
        f"kept across reboots by the line `kernel.apparmor_restrict_unprivileged_userns=0` in {SYSCTL_FILE}"
    )
    root = AS_ROOT.removeprefix("or ")
    intro = f"Ubuntu's AppArmor lets only programs with a profile create user namespaces{_on_host(container)}. Either"
    return "\n".join([intro, *_numbered([profile, sysctl, root])])


def userns_clone(container: str | None) -> str:
    """Return the two ways past Debian's switch for unprivileged user namespaces: the sysctl, root."""
    return (
        f"allow unprivileged user namespaces{_on_host(container)}: `sudo sysctl -w kernel.unprivileged_userns_clone=1`, "
        f"kept across reboots by the line `kernel.unprivileged_userns_clone=1` in {SYSCTL_FILE}; {AS_ROOT}."
    )


def namespace_limits(zero: list[str], as_root: bool, container: str | None) -> str:
    """Return how to raise the namespace limits that are 0 (and root, when only the user namespace's is)."""
    commands = " and ".join(f"`sudo sysctl -w {name}=15000`" for name in zero)
    kept = ", ".join(f"`{name}=15000`" for name in zero)
    fix = f"raise the limit{_on_host(container)}: {commands}, kept across reboots by {kept} in {SYSCTL_FILE}"
    if zero == ["user.max_user_namespaces"] and not as_root:
        fix += f"; {AS_ROOT}"
    return fix + "."


def nested() -> str:
    """Return how to grade when this process is already in a user namespace that refuses another one."""
    return (
        "the grader already runs inside a user namespace (a sandbox such as `bwrap --disable-userns` or Flatpak, or a "
        "rootless container) that lets it create no other, so bwrap cannot nest its own. Run `dora-lab grade` "
        f"outside that sandbox or container: as a normal user where user namespaces are allowed, or as root ({SUDO})."
    )


def container(kind: str, as_root: bool, proc: bool) -> str:
    """Return the settings that let the grader's container create namespaces, for Kubernetes or a container engine.

    Args:
        kind: "Kubernetes pod", "Docker container", "Podman container" or "container".
        as_root: the grader is root in the container (then it also needs CAP_SYS_ADMIN).
        proc: bwrap could not mount /proc (a masked /proc: only privileged or root with SYS_ADMIN help).
    """
    why = (
        f"the {'pod' if kind == 'Kubernetes pod' else 'container'}'s default seccomp profile refuses namespaces to a "
        "process without CAP_SYS_ADMIN, and its default AppArmor profile refuses mounts."
    )
    if proc:
        why += (
            " It also masks parts of /proc, and the kernel then refuses a new /proc to a user namespace: only a "
            "privileged container or a root grader with SYS_ADMIN helps."
        )
    unconfined = not proc or as_root
    # A normal grader past the seccomp filter may next meet the masked /proc (bwrap mounts a new one).
    then = "" if as_root else " (if bwrap then cannot mount /proc: a later remedy)"
    if kind == "Kubernetes pod":
        profiles = "seccompProfile: {type: Unconfined}, appArmorProfile: {type: Unconfined}"
        remedies = (
            [
                f"securityContext: {{{'capabilities: {add: [SYS_ADMIN]}, ' if as_root else ''}{profiles}}} "
                "(before Kubernetes 1.30, AppArmor through the annotation "
                f"container.apparmor.security.beta.kubernetes.io/<container>: unconfined){then}"
            ]
            if unconfined
            else []
        )
        remedies.append(
            "securityContext: {privileged: true} (every capability and an unmasked /proc: only for the grader's pod)"
        )
        if not as_root:
            remedies.append(
                f"run the grader as root in the pod: securityContext: {{runAsUser: 0, capabilities: "
                f"{{add: [SYS_ADMIN]}}, {profiles}}}"
            )
        where = "In the grader's container spec, set"
    else:
        engine = {"Docker container": "docker", "Podman container": "podman"}.get(kind, "docker (or your engine's)")
        profiles = "--security-opt seccomp=unconfined --security-opt apparmor=unconfined"
        cap = "--cap-add SYS_ADMIN " if as_root else ""
        remedies = [f"`{engine} run {cap}{profiles} ...`{then}"] if unconfined else []
        remedies.append(f"`{engine} run --privileged ...` (every capability and an unmasked /proc)")
        if not as_root:
            remedies.append(f"grade as root in it: `{engine} run --user root --cap-add SYS_ADMIN {profiles} ...`")
        where = "Start it with"
    return "\n".join([f"{why} {where}", *_numbered(remedies)])


def _numbered(remedies: list[str]) -> list[str]:
    """Return the remedies as lines "  (1) ...;", "  (2) or ...;", the last ending in a full stop."""
    return [
        f"  ({number}) {'or ' if number > 1 else ''}{remedy}{'.' if number == len(remedies) else ';'}"
        for number, remedy in enumerate(remedies, 1)
    ]


def unrecognised(bwrap: str, as_root: bool) -> str:
    """Return what to try when no known case explains bwrap's failure."""
    fix = (
        f"bwrap's message above says what failed. Check that `{bwrap} --unshare-all --ro-bind / / --proc /proc --dev "
        "/dev -- /bin/true` succeeds as the grading user; a security module (SELinux, AppArmor) may deny "
        "bwrap its namespaces or mounts (see `journalctl -k`)"
    )
    return fix + ("." if as_root else f"; {AS_ROOT}.")


def unsandboxed_status() -> str:
    """Return the status line of a submission graded without bubblewrap (grades.csv, status.json, plain pages)."""
    if os.geteuid() == 0:
        return (
            f"{NO_SANDBOX}: student code ran as an unprivileged uid with the resource limits only, able to read what "
            "other users may read, reach the network and see every process"
        )
    return (
        f"{NO_SANDBOX}: student code ran as the grading account with the resource limits only, able to read and "
        "change its files (this grading folder and its gradebook included), reach the network and signal its "
        "processes; grade again in a sandbox to be sure no grade was tampered with"
    )


UNSANDBOXED_NOTICE = (
    f"{NO_SANDBOX}: your notebook ran on the grading machine with resource limits only, not in the sandbox that "
    "normally isolates each submission."
)
"""What the student's feedback page says of a submission graded without bubblewrap."""
