"""Run untrusted student code: its own user, scratch folder, resource limits and a hidden view of the course.

Used as a launcher, ``python -m labhelpers.grading.sandbox [options] -- COMMAND...``: it starts as the grader
(root), hides the instructor's folders in a private mount namespace, sets the limits, drops to the sandbox user
and ``exec``s COMMAND in the scratch folder with a clean environment. The kernel manager below wraps every
kernel nbgrader starts with it, and the clean re-check (``verify.py``) runs under it too.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

SANDBOX_UID_BASE = 61000
"""Sandbox users are numeric ids from here up, with no login (no /etc/passwd entry needed)."""
MAX_SLOTS = 32
"""Most submissions one grading run sandboxes at once (--jobs)."""


def run_uid_base(pid: int | None = None) -> int:
    """Return this grading run's first sandbox uid: runs at the same time (distinct pids) never share a user id."""
    return SANDBOX_UID_BASE + ((os.getpid() if pid is None else pid) % 60000) * MAX_SLOTS


# Variables the sandboxed process may inherit; everything else (tokens, the grader's paths) is dropped.
LIBRARY_WARNINGS = "ignore::DeprecationWarning,ignore::FutureWarning"
"""PYTHONWARNINGS of graded kernels: nbgrader fails a test cell that writes to stderr, and the pinned libraries'
deprecation notices must not cost points."""

_PASSED_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ", "LAB_DATA_DIR", "LAB_SEED", "LAB_MODEL", "LAB_DEVICE")


@dataclass(frozen=True)
class Sandbox:
    """Where and how one submission's code runs.

    Attributes:
        workdir: the scratch working copy (owned by the sandbox user); the kernel's cwd and HOME.
        uid: the unprivileged user id the code runs as, or None when the grader is not root (weaker: same user).
        memory_bytes: address-space cap (RLIMIT_AS) of each sandboxed process.
        max_processes: process/thread cap of the sandbox user (RLIMIT_NPROC): stops fork bombs.
        max_file_bytes: largest file the code may write (RLIMIT_FSIZE).
        threads: OMP/MKL/torch threads, so that parallel graders share the cores instead of fighting over them.
        hide: folders made empty and unreadable inside the sandbox (instructor's sources, gradebook, submissions).
    """

    workdir: Path
    uid: int | None
    memory_bytes: int = 6 * 2**30
    max_processes: int = 512
    max_file_bytes: int = 256 * 2**20
    threads: int = 1
    hide: tuple[Path, ...] = field(default_factory=tuple)

    def command(self, argv: list[str]) -> list[str]:
        """Return `argv` wrapped in the launcher, as the grader should start it."""
        options = [
            "--workdir",
            str(self.workdir),
            "--memory",
            str(self.memory_bytes),
            "--nproc",
            str(self.max_processes),
            "--fsize",
            str(self.max_file_bytes),
            "--threads",
            str(self.threads),
        ]
        if self.uid is not None:
            options += ["--uid", str(self.uid)]
        for path in self.hide:
            options += ["--hide", str(path)]
        # -P: never import from the current folder (the scratch folder holds files the student's code wrote).
        return [sys.executable, "-P", "-m", "labhelpers.grading.sandbox", *options, "--", *argv]


def can_switch_user() -> bool:
    """Return True when the grader may run code as another user (it is root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def make_sandbox(
    scratch_root: Path, slot: int, switch_user: bool = True, uid_base: int = SANDBOX_UID_BASE, **limits
) -> Sandbox:
    """Create a fresh scratch folder for one submission and the Sandbox that runs in it.

    Args:
        scratch_root: an existing folder the sandbox user can traverse (e.g. a fresh folder under /tmp).
        slot: a number below MAX_SLOTS unique among submissions graded at the same time; gives the sandbox user id.
        switch_user: run as the slot's unprivileged user when the grader is root (see probe()).
        uid_base: the grading run's first sandbox uid (run_uid_base()).
        **limits: Sandbox fields (memory_bytes, threads, hide, ...).

    Returns:
        The Sandbox; its workdir exists, is empty and belongs to the sandbox user.
    """
    uid = uid_base + slot if switch_user and can_switch_user() else None
    if uid is None:
        warnings.warn(
            "Grading as a normal user: student code runs as you and could write where you can. "
            "Run `dora-lab grade` as root (it then uses one unprivileged user per submission) for full isolation.",
            stacklevel=2,
        )
    workdir = scratch_root / f"slot-{slot}"
    if workdir.exists():
        kill_user_processes(uid)
        shutil.rmtree(workdir)
    workdir.mkdir(mode=0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return Sandbox(workdir=workdir, uid=uid, **limits)


def probe(scratch_root: Path) -> str:
    """Check that a sandboxed user can start this Python and import labhelpers; return the problem, or ""."""
    import subprocess

    if not can_switch_user():
        return "not root"
    sandbox = make_sandbox(scratch_root, slot=MAX_SLOTS - 1, uid_base=run_uid_base(), memory_bytes=6 * 2**30)
    try:
        completed = subprocess.run(
            sandbox.command([sys.executable, "-P", "-c", "import labhelpers.config"]),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        remove_sandbox(sandbox)
    if completed.returncode != 0:
        return (completed.stderr.strip().splitlines() or ["exit code %d" % completed.returncode])[-1]
    return ""


def kill_user_processes(uid: int | None) -> int:
    """SIGKILL every process of the sandbox user (background children survive their kernel otherwise).

    Returns:
        How many processes were killed.
    """
    if uid is None or uid < SANDBOX_UID_BASE:
        return 0
    killed = 0
    for _ in range(20):
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == uid:
                    found.append(int(entry.name))
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed


def remove_sandbox(sandbox: Sandbox) -> None:
    """Kill what is left of the submission's processes and delete its scratch folder."""
    kill_user_processes(sandbox.uid)
    shutil.rmtree(sandbox.workdir, ignore_errors=True)


def sandbox_environment(sandbox: Sandbox) -> dict[str, str]:
    """Return the environment of sandboxed code: grading settings, caches in the scratch folder, nothing else."""
    env = {name: os.environ[name] for name in _PASSED_VARIABLES if name in os.environ}
    env.setdefault("PATH", os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    home = str(sandbox.workdir)
    threads = str(sandbox.threads)
    env.update(
        HOME=home,
        USER="student",
        LOGNAME="student",
        TMPDIR=home,
        LAB_FAST="1",
        LAB_OUTPUT_DIR=os.path.join(home, "outputs"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=os.path.join(home, ".cache", "huggingface"),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=os.path.join(home, ".config", "matplotlib"),
        JUPYTER_RUNTIME_DIR=os.path.join(home, ".local", "runtime"),
        IPYTHONDIR=os.path.join(home, ".ipython"),
        PYTHONDONTWRITEBYTECODE="1",
        # nbgrader scores a test cell 0 when it writes to stderr: a library's deprecation notice must not cost points.
        PYTHONWARNINGS=LIBRARY_WARNINGS,
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
    )
    return env


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run inside `sandbox` (set on the class by the grading worker)."""

    sandbox: Sandbox | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        # Always this interpreter's ipykernel, whatever kernelspec the submission names.
        if self.sandbox is None:
            raise RuntimeError(
                "SandboxKernelManager.sandbox is not set: the grading worker sets it before autograding"
            )
        argv = [sys.executable, "-P", "-m", "ipykernel_launcher", "-f", self.connection_file, *(extra_arguments or [])]
        return self.sandbox.command(argv)


# --- the launcher (runs as root until it execs) -------------------------------------------------------------------

_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE, _MS_RDONLY, _MS_BIND, _MNT_DETACH = 0x4000, 0x40000, 0x1, 0x1000, 0x2
_PR_SET_NO_NEW_PRIVS = 38


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _closed_ancestor(path: str) -> tuple[str, str] | None:
    """Return (the first folder above `path` that other users cannot enter, its child towards `path`), or None."""
    parts = Path(path).resolve().parts
    for depth in range(1, len(parts)):
        folder = os.path.join(*parts[:depth])
        if not os.stat(folder).st_mode & 0o001:
            return folder, parts[depth]
    return None


def _private_mounts(hide: list[str], expose: list[str], workdir: str) -> bool:
    """In a private mount namespace, hide folders and open a path through closed ones; False if not permitted.

    Hiding mounts an empty tmpfs that nobody may enter over each folder. Exposing handles, e.g., a Python
    installed under /root (mode 0700): /root is replaced by an empty enterable tmpfs into which only the needed
    child (/root/.pyenv) is bind-mounted back, so the rest of /root stays invisible.
    """
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    children: dict[str, set[str]] = {}
    for path in expose:
        found = _closed_ancestor(path)
        if found:
            children.setdefault(found[0], set()).add(found[1])
    for index, (folder, names) in enumerate(children.items()):
        stage = os.path.join(workdir, f".stage-{index}")
        staged = []
        for name in sorted(names):
            target = os.path.join(stage, name)
            os.makedirs(target)
            if libc.mount(os.path.join(folder, name).encode(), target.encode(), None, _MS_BIND | _MS_REC, None) != 0:
                return False
            staged.append((name, target))
        if libc.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, b"size=64k,mode=0755") != 0:
            return False
        for name, target in staged:
            os.makedirs(os.path.join(folder, name))
            libc.mount(target.encode(), os.path.join(folder, name).encode(), None, _MS_BIND | _MS_REC, None)
            libc.umount2(target.encode(), _MNT_DETACH)
        shutil.rmtree(stage, ignore_errors=True)
    for path in hide:
        if os.path.isdir(path):
            libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_RDONLY, b"size=4k,mode=000")
    return True


def needed_paths() -> list[str]:
    """Return the folders sandboxed code must read: the interpreter, the venv, labhelpers and the SST-2 folder."""
    import labhelpers

    paths = [
        sys.base_prefix,
        sys.prefix,
        os.path.realpath(sys.executable),
        os.path.dirname(os.path.dirname(labhelpers.__file__)),
    ]
    if os.environ.get("LAB_DATA_DIR"):
        paths.append(os.environ["LAB_DATA_DIR"])
    return [os.path.realpath(p) for p in paths]


def _private_connection_file(argv: list[str], workdir: str, uid: int) -> list[str]:
    """Copy the kernel's connection file (root-only, 0600) into the scratch folder, owned by the sandbox user."""
    if "-f" not in argv:
        return argv
    index = argv.index("-f") + 1
    data = Path(argv[index]).read_bytes()
    copy = os.path.join(workdir, ".kernel-connection.json")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chown(copy, uid, uid)
    return [*argv[:index], copy, *argv[index + 1 :]]


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.grading.sandbox", description="Run COMMAND sandboxed.")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--fsize", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    argv = options.command[1:] if options.command[:1] == ["--"] else options.command
    sandbox = Sandbox(
        workdir=Path(options.workdir),
        uid=options.uid,
        memory_bytes=options.memory,
        max_processes=options.nproc,
        max_file_bytes=options.fsize,
        threads=options.threads,
    )
    env = sandbox_environment(sandbox)
    for name in ("outputs", ".config/matplotlib", ".local/runtime", ".cache"):
        os.makedirs(os.path.join(options.workdir, name), exist_ok=True)
    if options.uid is not None:
        argv = _private_connection_file(argv, options.workdir, options.uid)
        for dirpath, dirnames, filenames in os.walk(options.workdir):
            for name in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
                os.lchown(name, options.uid, options.uid)
        if not _private_mounts(options.hide, needed_paths(), options.workdir):
            print("sandbox: no private mount namespace; instructor folders stay readable", file=sys.stderr)
    # Limits are inherited by every child and cannot be raised again by an unprivileged user.
    resource.setrlimit(resource.RLIMIT_AS, (options.memory, options.memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (options.fsize, options.fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if options.uid is not None:
        # Per user: the uid is this submission's alone, so the cap cannot starve other graders.
        resource.setrlimit(resource.RLIMIT_NPROC, (options.nproc, options.nproc))
        os.setgroups([])
        os.setresgid(options.uid, options.uid, options.uid)
        os.setresuid(options.uid, options.uid, options.uid)
    # No setuid binary (su, mount, ...) can give the privileges back.
    _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.chdir(options.workdir)
    os.umask(0o077)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
