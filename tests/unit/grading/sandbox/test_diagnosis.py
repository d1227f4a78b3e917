"""Each way bubblewrap can fail to isolate, shown to the diagnosis without changing the machine: its case and its fix.

A case is a fake machine: a folder standing for / (sysctls under proc/sys, container markers, /etc/os-release) and,
on the PATH given, either no bwrap or a fake one that prints bwrap's real message for that failure and exits 1.
The messages are bubblewrap's own (bubblewrap.c, network.c), as Ubuntu 24.04, Debian and container users report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labhelpers.grading.sandbox.capability import ISOLATION
from labhelpers.grading.sandbox.diagnosis import (
    APPARMOR,
    CONTAINER,
    LIMIT_ZERO,
    MISSING,
    NESTED,
    TOO_OLD,
    UNRECOGNISED,
    USERNS_OFF,
    Machine,
    diagnose,
)

# bwrap's messages (bubblewrap.c, network.c; die() prefixes "bwrap: ", die_with_error() appends strerror).
RTM_NEWADDR = "bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted"
UID_MAP = "bwrap: setting up uid map: Permission denied"
NO_PERMISSION = (
    "bwrap: No permissions to create a new namespace, likely because the kernel does not allow non-privileged user "
    "namespaces. On e.g. debian this can be enabled with 'sysctl kernel.unprivileged_userns_clone=1'."
)
ENOSPC = "bwrap: Creating new namespace failed: nesting depth or /proc/sys/user/max_*_namespaces exceeded (ENOSPC)"
EPERM = "bwrap: Creating new namespace failed: Operation not permitted"
PROC = "bwrap: Can't mount proc on /newroot/proc: Operation not permitted"
UNKNOWN_OPTION = "bwrap: Unknown option --disable-userns"

DEBIAN = {"etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'}
UBUNTU = {"etc/os-release": 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\n'}
ALLOWED = {
    "proc/sys/kernel/unprivileged_userns_clone": "1\n",
    "proc/sys/user/max_user_namespaces": "63000\n",
    "proc/sys/user/max_mnt_namespaces": "63000\n",
}
# A container's process: Docker's default capabilities (no CAP_SYS_ADMIN), a seccomp filter, /proc/sys read-only.
CONFINED = {
    "proc/self/status": "Name:\tpython\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t2\n",
    "proc/self/mounts": "proc /proc proc rw,nosuid,nodev,noexec 0 0\nproc /proc/sys proc ro,nosuid,nodev,noexec 0 0\n",
}
POD = {"var/run/secrets/kubernetes.io/serviceaccount/token": "x"}
DOCKER = {".dockerenv": ""}


@dataclass(frozen=True)
class Case:
    """A machine on which bwrap cannot isolate, and what the diagnosis must say of it.

    Attributes:
        name: the test id.
        said: bwrap's message (None: no bwrap on PATH).
        files: the fake machine's files, by path below its root.
        as_root: the grader is root.
        case: the case named.
        says: fragments of the message (the diagnosis, then the fix).
        never: fragments the message must not hold (a fix that does not apply here).
    """

    name: str
    said: str | None
    files: dict[str, str]
    as_root: bool
    case: str
    says: tuple[str, ...]
    never: tuple[str, ...] = ()
    environ: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("bwrap missing on Debian", None, DEBIAN, False, MISSING, ("bwrap missing", "`sudo apt-get install bubblewrap`", "Debian GNU/Linux 12"), ("dnf",)),
    Case("bwrap missing on Fedora", None, {"etc/os-release": "ID=fedora\n"}, True, MISSING, ("`sudo dnf install bubblewrap`",), ("apt-get",)),
    Case("bwrap missing on an unknown system", None, {}, False, MISSING, ("apt-get install bubblewrap` (Debian, Ubuntu)", "dnf install", "zypper install", "pacman -S", "apk add")),
    Case("bwrap missing in a pod's image", None, {**DEBIAN, **POD}, False, MISSING, ("running in a Kubernetes pod", "install it in the image", "RUN apt-get install -y bubblewrap")),
    Case("bwrap older than 0.8.0", UNKNOWN_OPTION, UBUNTU, False, TOO_OLD, ("bwrap too old", UNKNOWN_OPTION, "bubblewrap 0.6.1", "--disable-userns, added in bubblewrap 0.8.0", "grade as root")),
    Case("Ubuntu 24.04 AppArmor, network namespace", RTM_NEWADDR, {**UBUNTU, **ALLOWED, "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, False, APPARMOR,
         ("AppArmor restricts user namespaces", RTM_NEWADDR, "kernel.apparmor_restrict_unprivileged_userns = 1", "userns,", "flags=(unconfined)", "apparmor_parser -r /etc/apparmor.d/bwrap", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0", "/etc/sysctl.d/", "grade as root"), ("on the host",)),
    Case("Ubuntu 24.04 AppArmor, uid map", UID_MAP, {**UBUNTU, **ALLOWED, "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, False, APPARMOR,
         ("AppArmor restricts user namespaces", UID_MAP, "profile bwrap")),
    Case("AppArmor restriction seen from a container", RTM_NEWADDR, {**UBUNTU, **DOCKER, "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, False, APPARMOR,
         ("AppArmor restricts user namespaces", "running in a Docker container", "on the host")),
    Case("Debian's unprivileged_userns_clone=0", NO_PERMISSION, {**DEBIAN, **ALLOWED, "proc/sys/kernel/unprivileged_userns_clone": "0\n"}, False, USERNS_OFF,
         ("unprivileged user namespaces disabled", "kernel.unprivileged_userns_clone = 0", "sysctl -w kernel.unprivileged_userns_clone=1", "grade as root"), ("AppArmor",)),
    Case("user.max_user_namespaces=0", ENOSPC, {**ALLOWED, "proc/sys/user/max_user_namespaces": "0\n"}, False, LIMIT_ZERO,
         ("namespaces limited to 0", "user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=15000", "grade as root")),
    Case("user.max_mnt_namespaces=0 stops root too", EPERM, {**ALLOWED, "proc/sys/user/max_mnt_namespaces": "0\n"}, True, LIMIT_ZERO,
         ("user.max_mnt_namespaces = 0", "sysctl -w user.max_mnt_namespaces=15000"), ("grade as root", "max_user_namespaces")),
    Case("inside a sandbox that refuses nested user namespaces", ENOSPC, {**ALLOWED, "proc/self/uid_map": "     59999      59999          1\n"}, False, NESTED,
         ("already inside a user namespace that allows no other", "/proc/self/uid_map: 59999 59999 1", "outside that sandbox"), ("sysctl -w",)),
    Case("a Kubernetes pod's seccomp, normal grader", NO_PERMISSION, {**ALLOWED, **CONFINED, **POD}, False, CONTAINER,
         ("the container refuses namespaces", "running in a Kubernetes pod", "a seccomp filter is on", "no CAP_SYS_ADMIN", "/proc/sys is mounted read-only",
          "seccompProfile: {type: Unconfined}", "appArmorProfile: {type: Unconfined}", "privileged: true", "runAsUser: 0, capabilities: {add: [SYS_ADMIN]}"), ("sysctl -w",)),
    Case("a pod found by its environment", NO_PERMISSION, {**ALLOWED, **CONFINED}, False, CONTAINER, ("running in a Kubernetes pod", "seccompProfile"), environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1"}),
    Case("Docker, root without CAP_SYS_ADMIN", EPERM, {**ALLOWED, **CONFINED, **DOCKER}, True, CONTAINER,
         ("running in a Docker container", "no CAP_SYS_ADMIN", "docker run --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined", "--privileged"), ("grade as root", "--user root")),
    Case("Podman, /proc masked for a user namespace", PROC, {**ALLOWED, "run/.containerenv": ""}, False, CONTAINER,
         ("running in a Podman container", PROC, "masks parts of /proc", "podman run --privileged", "podman run --user root --cap-add SYS_ADMIN")),
    Case("root on a host where bwrap still fails", EPERM, {**UBUNTU, **ALLOWED, "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, True, UNRECOGNISED,
         ("unrecognised", EPERM, "not in a container", "--unshare-all", "journalctl -k"), ("grade as root", "apparmor_parser")),
]  # fmt: skip


def fake_machine(tmp_path: Path, said: str | None, files: dict[str, str]) -> tuple[Path, str]:
    """Make a fake root holding `files` and a PATH folder with a fake bwrap printing `said` (none when None)."""
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if said is not None:
        (bin_dir / "said").write_text(said + "\n")
        bwrap = bin_dir / "bwrap"
        # The trial run gives bwrap an empty environment: the script names nothing through PATH.
        bwrap.write_text(
            '#!/bin/sh\nif [ "$1" = --version ]; then echo "bubblewrap 0.6.1"; exit 0; fi\n'
            'printf "%s\\n" "$@" > "${0%/*}/args"\nwhile read -r line; do echo "$line" >&2; done < "${0%/*}/said"\n'
            "exit 1\n"
        )
        bwrap.chmod(0o755)
    return root, str(bin_dir)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_failure_gets_its_case_and_its_fix(tmp_path, case):
    root, path = fake_machine(tmp_path, case.said, case.files)
    found = diagnose(Machine(root=root, path=path, as_root=case.as_root, environ=case.environ))
    message = found.message()
    assert not found.works and found.case == case.case, message
    assert message.startswith(f"bubblewrap cannot isolate student code on this machine: {case.case}."), message
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    for fragment in case.never:
        assert fragment not in message, f"{fragment!r} should not be in:\n{message}"


@pytest.mark.parametrize("as_root, who", [(False, "as you"), (True, "as an unprivileged uid per slot")])
def test_the_refusal_names_no_sandbox_as_the_last_resort_and_what_it_loses(tmp_path, as_root, who):
    root, path = fake_machine(tmp_path, None, DEBIAN)
    last = diagnose(Machine(root=root, path=path, as_root=as_root)).message().splitlines()[-1]
    assert last.startswith("Last resort: add --no-sandbox to grade without isolation.")
    assert who in last and "reach the network" in last and "every status and feedback page says so" in last


def test_a_bwrap_that_works_is_no_case(tmp_path):
    root, path = fake_machine(tmp_path, None, {})
    (Path(path) / "bwrap").write_text("#!/bin/sh\nexit 0\n")
    (Path(path) / "bwrap").chmod(0o755)
    found = diagnose(Machine(root=root, path=path, as_root=False))
    assert found.works and found.bwrap == str(Path(path) / "bwrap") and found.message() == ""


@pytest.mark.parametrize("as_root", [False, True], ids=["normal grader", "root"])
def test_the_trial_run_asks_bwrap_for_what_a_sandbox_needs(tmp_path, as_root):
    root, path = fake_machine(tmp_path, UID_MAP, {})
    diagnose(Machine(root=root, path=path, as_root=as_root))
    argv = (Path(path) / "args").read_text().splitlines()
    assert argv[: len(ISOLATION)] == list(ISOLATION)
    assert ("--disable-userns" in argv) is not as_root  # the nested-namespace refusal a normal grader's sandbox uses
    for mount in (["--proc", "/proc"], ["--dev", "/dev"], ["--tmpfs", "/tmp"]):
        assert any(argv[i : i + 2] == mount for i in range(len(argv))), mount
    assert argv[-2:] == ["--", "/usr/bin/true"]
