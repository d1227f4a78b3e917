"""Run untrusted student code in a bubblewrap sandbox that sees only what the notebook needs.

bubblewrap (``bwrap``) builds each sandbox from an empty root and binds into it, read-only, the system (``/usr``),
the Python install, the venv, the lab package and (notebook view) the SST-2 folder; the sandbox's own scratch
folder is the only writable place. Nothing else of the machine exists inside: no home folders, no other copy of the
solutions, no classmates' submissions, no network. ``Sandbox.command(argv)`` is a plain argv (``env -i bwrap ...
-- [setpriv ... -- bwrap --disable-userns ...] prlimit ... -- argv``), so ``subprocess.run`` and jupyter_client's
kernel launcher start it alike.

As root, each concurrent slot also runs as its own unprivileged uid (processes counted and killed per uid); as a
normal user, bwrap's user namespace is the isolation. Without bwrap, `problem()` says what to install and what is
lost, and code runs with the resource limits only.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

import labhelpers
from labhelpers.errors import LabGradingError

VIEWS = ("notebook", "probe")
"""What a sandbox sees of the lab: the whole package and SST-2 (a notebook), or only the probes (a probe)."""
HOME = "/home/student"
"""Where the scratch folder appears inside: cwd, HOME, TMPDIR, also bound at /tmp and /dev/shm."""
DATA = "/data/sst2"
"""Where the SST-2 folder appears inside the notebook view (LAB_DATA_DIR)."""
MAX_SLOTS = 32
"""Most submissions one grading run sandboxes at once (--jobs); each slot has a notebook and a probe sandbox."""
FIRST_UID = 200_000
"""Sandbox uids (root only) start here: above the 16-bit ids of accounts and systemd's dynamic users (61184-65519)."""
UIDS_PER_RUN = 2 * MAX_SLOTS
RUN_RANGES = (2**31 - FIRST_UID) // UIDS_PER_RUN
"""uid ranges of UIDS_PER_RUN ids (below 2**31): grading runs on one machine at the same time each hold one."""
UID_REGISTRY = Path("/run/dora-lab")
"""Root-only folder recording which scratch root (grading run) holds which uid range; /run is emptied at boot."""
LIBRARY_WARNINGS = "ignore::DeprecationWarning,ignore::FutureWarning"
"""PYTHONWARNINGS of graded code: nbgrader fails a test cell that writes to stderr, and the pinned libraries'
deprecation notices must not cost points."""

_TOOLS_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# Namespaces: all of them (a network namespace has only its own loopback). The pid namespace and
# --die-with-parent make killing bwrap, or the grader dying, end every process of the sandbox.
_ISOLATION = (
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


@dataclass(frozen=True)
class Limits:
    """Resource limits of every process in a sandbox.

    Attributes:
        memory_bytes: address-space cap of each process (RLIMIT_AS): an allocation beyond it fails (MemoryError).
        max_processes: processes and threads of the sandbox (RLIMIT_NPROC): stops fork bombs.
        max_file_bytes: largest file the code may write (RLIMIT_FSIZE).
        threads: OMP/MKL/torch threads, so that parallel sandboxes share the cores instead of fighting over them.
    """

    memory_bytes: int = 6 * 2**30
    max_processes: int = 512
    max_file_bytes: int = 256 * 2**20
    threads: int = 1


@dataclass(frozen=True)
class Sandbox:
    """Where and how one piece of student code runs.

    Attributes:
        workdir: the fresh scratch folder, the only writable place (HOME inside; also /tmp and /dev/shm).
        view: "notebook" or "probe" (see `make_sandbox`).
        uid: the slot's unprivileged uid when the grader is root; None for a normal grader (bwrap's user namespace).
        limits: the resource limits.
        env: the whole environment inside (nothing of the grader's).
        mounts: bwrap's arguments that build the view (empty when bwrap is unavailable).
        bwrap: the bwrap program, or None: then code runs with the limits only (see `problem()`).
    """

    workdir: Path
    view: str
    uid: int | None
    limits: Limits
    env: Mapping[str, str]
    mounts: tuple[str, ...] = ()
    bwrap: str | None = None

    @property
    def home(self) -> str:
        """The workdir's path as the sandboxed code sees it."""
        return HOME if self.bwrap else str(self.workdir)

    def inside(self, path: Path) -> str:
        """Return the path inside the sandbox of `path`, a file in the workdir."""
        return str(Path(self.home) / Path(path).relative_to(self.workdir))

    def command(self, argv: list[str]) -> list[str]:
        """Return the argv that runs `argv` inside the sandbox (for subprocess.run or a kernel launcher)."""
        limits = [
            _tool("prlimit"),
            f"--as={self.limits.memory_bytes}",
            f"--fsize={self.limits.max_file_bytes}",
            "--core=0",
            f"--nproc={self.limits.max_processes}",
            "--",
        ]
        # setpriv drops root for the slot's uid: no groups, no capabilities, none to regain (no_new_privs).
        drop = (
            [_tool("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
            + ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            if self.uid is not None
            else []
        )
        if not self.bwrap:
            environment = ["-C", str(self.workdir), *(f"{name}={value}" for name, value in self.env.items())]
            # The parent-death signal stands in for bwrap's --die-with-parent (the code's own children may outlive).
            drop = drop or [_tool("setpriv"), "--"]
            return [drop[0], "--pdeathsig=KILL", *drop[1:], *limits, _tool("env"), "-i", *environment, *argv]
        # As a normal user bwrap's user namespace is the isolation; nested namespaces are refused.
        user = ["--unshare-user", "--disable-userns"] if self.uid is None else []
        if self.uid is not None and _users_may_unshare():
            # The slot's uid could make a user namespace of its own and mount a tmpfs there, memory RLIMIT_AS does
            # not count; a second, unprivileged bwrap refuses them (--disable-userns needs a user namespace).
            drop += [self.bwrap, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
        environment = ["--clearenv"] + [word for name, value in self.env.items() for word in ("--setenv", name, value)]
        # `env -i`: bwrap's own process (pid 1 inside) keeps an empty environment; as the same user the code
        # could read it in /proc/1/environ, and the grader's variables (tokens, paths) must not be there.
        # prlimit runs inside: in bwrap's user namespace RLIMIT_NPROC then counts this sandbox's processes only
        # (set outside, it would count all the grader's processes).
        return [
            _tool("env"),
            "-i",
            self.bwrap,
            *_ISOLATION,
            *user,
            *self.mounts,
            "--chdir",
            HOME,
            *environment,
            "--",
            *drop,
            *limits,
            *argv,
        ]


@functools.cache
def _tool(name: str) -> str:
    """Return the absolute path of a system tool (prlimit, setpriv, env from util-linux and coreutils)."""
    found = shutil.which(name, path=_TOOLS_PATH)
    if found is None:
        raise LabGradingError(
            f"`{name}` was not found in {_TOOLS_PATH}: grading needs util-linux (prlimit, setpriv) and coreutils "
            f"(env); install them (`apt-get install util-linux coreutils`)."
        )
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


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
def problem() -> str:
    """Say why sandboxes cannot be built here, what to install and what protection is lost; "" when bwrap works.

    Returns:
        "" when bubblewrap runs here; else one paragraph for the instructor.
    """
    lost = LOST_AS_ROOT if _is_root() else LOST_AS_USER
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return (
            "bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap` (Debian, Ubuntu) or "
            f"`dnf install bubblewrap` (Fedora). Without it, {lost}."
        )
    user = [] if _is_root() else ["--unshare-user", "--disable-userns"]
    test = [bwrap, *_ISOLATION, *user, "--ro-bind", "/usr", "/usr", *_system_links(), "--", "/usr/bin/true"]
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
def _users_may_unshare() -> bool:
    """True when unprivileged users may create user namespaces here (then bwrap can forbid it in a sandbox)."""
    nobody = [_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    test = [shutil.which("bwrap") or "bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/usr", "/usr"]
    try:
        completed = subprocess.run([*nobody, *test, *_system_links(), "--", "/usr/bin/true"], capture_output=True)
    except OSError:
        return False
    return completed.returncode == 0


def _system_links() -> list[str]:
    """Return bwrap arguments recreating /bin, /lib, ... as on the host (links into /usr on merged-/usr systems)."""
    arguments = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/", name)
        if host.is_symlink():
            arguments += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            arguments += ["--ro-bind", str(host), str(host)]
    return arguments


def _package_folder() -> Path:
    """Return the folder of the lab package (the editable install's `labhelpers/`)."""
    return Path(labhelpers.__file__).resolve().parent


def _python_roots() -> list[Path]:
    """Return the folders Python needs: its install (sys.base_prefix) and the venv (sys.prefix)."""
    roots = []
    for prefix in dict.fromkeys([sys.base_prefix, sys.prefix, sys.exec_prefix]):
        for path in dict.fromkeys([Path(prefix), Path(prefix).resolve()]):
            if not any(path == root or root in path.parents for root in [Path("/usr"), *roots]):
                roots.append(path)
    return roots


def _view_mounts(
    view: str, slot_dir: Path, workdir: Path, data_dir: Path | None, overlays: Mapping[Path, Path]
) -> list[str]:
    """Return the bwrap arguments building the view: system, Python, the lab package (whole or probes), data."""
    etc = slot_dir / "etc"
    binds = [("--ro-bind-try", f"/etc/{name}", f"/etc/{name}") for name in ("ld.so.cache", "fonts")]
    binds += [("--ro-bind", str(etc / name), f"/etc/{name}") for name in ("passwd", "group", "hosts")]
    binds += [("--ro-bind", str(root.resolve()), str(root)) for root in _python_roots()]
    package = _package_folder()
    if view == "notebook":
        binds.append(("--ro-bind", str(package), str(package)))
    else:
        # Judges, reference code and checks stay outside: only the package's __init__ and its probes exist inside.
        # Installed into the venv (not editable), the package comes with the venv: an empty folder covers it first.
        if any(root in package.parents for root in _python_roots()):
            binds.append(("--tmpfs", str(package)))
        for part in (package / "__init__.py", package / "probes"):
            if not part.exists():
                raise LabGradingError(f"{part} does not exist: the probe view needs labhelpers/probes/.")
            binds.append(("--ro-bind", str(part), str(part)))
        for target, source in overlays.items():
            binds += _overlay(Path(target), Path(source), etc / "empty")
    if view == "notebook" and data_dir is not None:
        binds.append(("--ro-bind", str(Path(data_dir).resolve()), DATA))
    binds += [("--bind", str(workdir), place) for place in (HOME, "/tmp")]
    targets = [Path(bind[-1]) for bind in binds] + [Path("/usr"), Path("/proc"), Path("/dev")]
    return [
        *("--ro-bind", "/usr", "/usr", *_system_links()),
        *_mount_points(targets),
        *(word for bind in binds for word in bind),  # in order: a later mount covers an earlier one
        *("--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), "/dev/shm"),
        # The root and /dev are bwrap's tmpfs: read-only, so that no write lands in unbounded memory.
        *("--remount-ro", "/dev", "--remount-ro", "/"),
    ]


def _mount_points(targets: list[Path]) -> list[str]:
    """Return bwrap arguments creating the folders that lead to `targets`, open to all (bwrap makes them 0700)."""
    folders: list[Path] = []
    for target in targets:
        for folder in reversed(target.parents[:-1]):
            if folder not in folders and not any(folder == t or t in folder.parents for t in targets):
                folders.append(folder)
    return [word for folder in folders for word in ("--perms", "0755", "--dir", str(folder))]


def _overlay(target: Path, source: Path, empty: Path) -> list[tuple[str, str, str]]:
    """Return bwrap arguments showing `source` at `target` (a file of the venv), hiding its compiled copies."""
    if not source.is_file():
        raise LabGradingError(f"overlay source {source} is not a file: give the file to show at {target}.")
    if not target.is_file() or not any(root in target.parents for root in _python_roots()):
        raise LabGradingError(
            f"overlay target {target} is not an existing file of the Python environment "
            f"({', '.join(map(str, _python_roots()))}): give the path of the module file to replace."
        )
    binds = [("--ro-bind", str(source.resolve()), str(target))]
    if target.suffix == ".py":
        # Python would load a stale compiled copy only if its recorded size and mtime matched; hide them anyway.
        for compiled in sorted((target.parent / "__pycache__").glob(f"{target.stem}.*.pyc")):
            binds.append(("--ro-bind", str(empty), str(compiled)))
    return binds


def _environment(home: str, view: str, data: str | None, limits: Limits) -> dict[str, str]:
    """Return the environment of sandboxed code: grading settings, caches in the scratch folder, nothing else."""
    threads = str(limits.threads)
    env = dict(
        PATH=f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        LANG="C.UTF-8",
        TZ="UTC",
        HOME=home,
        USER="student",
        LOGNAME="student",
        TMPDIR=home,
        LAB_FAST="1",
        LAB_OUTPUT_DIR=f"{home}/outputs",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=f"{home}/.cache/huggingface",
        MPLBACKEND="Agg",
        MPLCONFIGDIR=f"{home}/.config/matplotlib",
        JUPYTER_RUNTIME_DIR=f"{home}/.local/runtime",
        IPYTHONDIR=f"{home}/.ipython",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        # nbgrader scores a test cell 0 when it writes to stderr: a library's deprecation notice must not cost points.
        PYTHONWARNINGS=LIBRARY_WARNINGS,
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
    )
    if view == "notebook" and data is not None:
        env["LAB_DATA_DIR"] = data
    # The sandbox imports the lab from where the grader does (also when that is not the editable install's folder).
    env["PYTHONPATH"] = str(_package_folder().parent)
    return env


def make_sandbox(
    scratch_root: Path,
    slot: int,
    view: str,
    limits: Limits = Limits(),
    *,
    data_dir: Path | None = None,
    overlays: Mapping[Path, Path] | None = None,
) -> Sandbox:
    """Create a fresh scratch folder for one slot and the Sandbox that runs code in it.

    Args:
        scratch_root: a folder of this grading run that only the grader may write (e.g. a fresh tempfile.mkdtemp);
            it also identifies the run's uid range when the grader is root.
        slot: a number below MAX_SLOTS, unique among the sandboxes of one view running at the same time.
        view: "notebook" (the whole lab package and `data_dir` at /data/sst2) or "probe" (only
            labhelpers/__init__.py and labhelpers/probes/, with `overlays` applied, no data).
        limits: the resource limits.
        data_dir: the SST-2 folder (notebook view).
        overlays: probe view: {file of the venv: file to show there instead}.

    Returns:
        The Sandbox; a previous sandbox of the same slot and view is killed and removed first.
    """
    if view not in VIEWS:
        raise LabGradingError(f"view {view!r} is not one of {', '.join(VIEWS)}.")
    if not 0 <= slot < MAX_SLOTS:
        raise LabGradingError(f"slot {slot} is outside 0..{MAX_SLOTS - 1}: grade at most {MAX_SLOTS} at once.")
    scratch_root = Path(scratch_root).resolve()
    uid = _run_first_uid(scratch_root) + 2 * slot + VIEWS.index(view) if _is_root() else None
    slot_dir = scratch_root / f"{view}-{slot}"
    if slot_dir.exists():
        _kill(slot_dir / "home", uid)
        _remove_tree(slot_dir)
    bwrap = shutil.which("bwrap") if not problem() else None
    workdir = slot_dir / "home"
    etc = slot_dir / "etc"
    etc.mkdir(parents=True)
    slot_dir.chmod(0o711)  # without bwrap the sandbox user must reach its workdir through here
    workdir.mkdir(mode=0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    inner_uid, inner_gid = (uid, uid) if uid is not None else (os.getuid(), os.getgid())
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/root:/usr/sbin/nologin\nstudent:x:{inner_uid}:{inner_gid}:student:{HOME}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\nstudent:x:{inner_gid}:\nnogroup:x:65534:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    (etc / "empty").write_bytes(b"")
    if bwrap:
        data = DATA if data_dir is not None else None
        mounts = tuple(_view_mounts(view, slot_dir, workdir, data_dir, overlays or {}))
    else:
        data = str(Path(data_dir).resolve()) if data_dir is not None else None
        mounts = ()
    if uid is not None:
        # bwrap binds as root, but the code runs as the slot's uid: it must be allowed to read what it sees;
        # without bwrap it must also be able to walk there (and to its workdir) through the host's folders.
        needed = [*_python_roots(), _package_folder(), *([Path(data_dir)] if data_dir is not None else [])]
        for path in needed:
            _check_readable_by_others(path.resolve(), ancestors=not bwrap)
        if not bwrap:
            _check_readable_by_others(slot_dir, ancestors=True, read=False)
    env = _environment(HOME if bwrap else str(workdir), view, data, limits)
    return Sandbox(workdir, view, uid, limits, env, mounts, bwrap)


def _check_readable_by_others(path: Path, ancestors: bool, read: bool = True) -> None:
    """Raise when the sandbox's uid could not read `path` (and, if `ancestors`, walk to it from /)."""
    folders = [*(reversed(path.parents) if ancestors else []), path]
    for folder in folders:
        needed = stat.S_IXOTH | (stat.S_IROTH if read and folder == path else 0)
        if folder.stat().st_mode & needed != needed:
            raise LabGradingError(
                f"{folder} cannot be {'read' if folder == path else 'entered'} by other users, so the sandbox's "
                f"unprivileged uid could not use {path}. Install bubblewrap (`apt-get install bubblewrap`), "
                f"`chmod o+rX` the folder, or grade as a normal user."
            )


def _run_first_uid(scratch_root: Path) -> int:
    """Return the first uid of the range the grading run of `scratch_root` holds, claiming a free range once.

    A claim is a link UID_REGISTRY/range-K -> scratch_root, valid while scratch_root/.sandbox-uids names K's
    first uid: two runs (two scratch roots) never share a uid, and a finished run's range is free again. Ranges
    that an account, a subordinate-id range (rootless containers) or a running process uses are skipped.
    """
    marker = scratch_root / ".sandbox-uids"
    UID_REGISTRY.mkdir(mode=0o700, exist_ok=True)
    with open(UID_REGISTRY / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            return int(marker.read_text())
        taken = _subordinate_ids()
        index = 0
        while index < RUN_RANGES:
            first = FIRST_UID + index * UIDS_PER_RUN
            uids = range(first, first + UIDS_PER_RUN)
            overlap = [end for start, end in taken if start < uids.stop and uids.start < end]
            if overlap:
                index = (max(overlap) - FIRST_UID + UIDS_PER_RUN - 1) // UIDS_PER_RUN  # the first range after it
                continue
            claim = UID_REGISTRY / f"range-{index}"
            ours = claim.is_symlink()
            if (ours and _holds(Path(os.readlink(claim)), first)) or _has_account(uids):
                index += 1
                continue
            if ours:
                _kill(None, uids)  # leftovers of one of our runs that crashed
            elif _processes(None, uids):
                index += 1  # someone else's processes run with these uids
                continue
            claim.unlink(missing_ok=True)
            os.symlink(scratch_root, claim)
            marker.write_text(str(first))
            return first
    raise LabGradingError(
        f"no free sandbox uid range below {FIRST_UID + RUN_RANGES * UIDS_PER_RUN} (see {UID_REGISTRY})."
    )


def _holds(scratch_root: Path, first: int) -> bool:
    try:
        return (scratch_root / ".sandbox-uids").read_text() == str(first)
    except (OSError, ValueError):
        return False


def _has_account(uids: range) -> bool:
    for uid in uids:
        try:
            pwd.getpwuid(uid)
            return True
        except KeyError:
            pass
    return False


def _subordinate_ids() -> list[tuple[int, int]]:
    """Return the [start, end) ranges of /etc/subuid and /etc/subgid (uids that users' rootless containers use)."""
    ranges = []
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    return ranges


def _processes(workdir: Path | None, uids: range, by_cwd: bool = False) -> list[int]:
    """Return the pids of a sandbox: its bwrap (whose argv names the workdir) and the processes of its uids.

    Args:
        workdir: the sandbox's workdir, or None.
        uids: the sandbox's uids (root), or an empty range.
        by_cwd: also the processes working in the workdir (without bwrap and root: best effort).
    """
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid in uids:
                found.append(int(entry.name))
            elif workdir is not None:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
                cwd = Path(os.readlink(Path(entry.path, "cwd"))) if by_cwd else None
                if (os.path.basename(argv[0]) == b"bwrap" and str(workdir).encode() in argv) or (
                    cwd is not None and (cwd == workdir or workdir in cwd.parents)
                ):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _kill(workdir: Path | None, uids: range | int | None, by_cwd: bool = False) -> None:
    """SIGKILL a sandbox's processes until none is left (killing bwrap ends its whole pid namespace).

    Args:
        workdir: the sandbox's workdir (finds its bwrap), or None.
        uids: the sandbox's uid (root), a range of them, or None.
        by_cwd: also kill the processes working in the workdir (see `_processes`).
    """
    uids = range(0) if uids is None else range(uids, uids + 1) if isinstance(uids, int) else uids
    for _ in range(100):
        pids = _processes(workdir, uids, by_cwd)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    raise LabGradingError(f"sandbox processes {pids} survived SIGKILL for 2 s.")


def _remove_tree(folder: Path) -> None:
    """Delete `folder`, also where student code took away the owner's permissions (a normal grader's files)."""

    def allow_and_retry(function, path, _):
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
            shutil.rmtree(path, onerror=allow_and_retry)
        else:
            function(path)

    shutil.rmtree(folder, onerror=allow_and_retry)


def remove_sandbox(sandbox: Sandbox) -> None:
    """Kill every process of the sandbox and delete its scratch folder."""
    _kill(sandbox.workdir, sandbox.uid, by_cwd=not sandbox.bwrap and sandbox.uid is None)
    slot_dir = sandbox.workdir.parent
    if slot_dir.exists():
        _remove_tree(slot_dir)


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run inside `sandbox` (set on the class by the grading worker).

    The kernel has no network, so it talks to the grader over ZeroMQ's ipc transport: socket files in the workdir,
    named in a connection file written there with the paths the kernel sees. bwrap does not forward signals, so
    interrupts travel as messages (ipykernel's control-channel ``interrupt_request``); killing the kernel kills
    bwrap, which ends the sandbox's whole pid namespace.
    """

    sandbox: Sandbox | None = None

    SOCKETS = ".kernel"
    """Prefix of the kernel's socket files in the workdir."""

    @property
    def kernel_spec(self) -> KernelSpec:
        # Always this interpreter's ipykernel, whatever kernelspec the submission names or the grader has installed.
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-P", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (sandboxed)",
                language="python",
                interrupt_mode="message",
            )
        return self._kernel_spec

    def _sandbox(self) -> Sandbox:
        if self.sandbox is None:
            raise RuntimeError(
                "SandboxKernelManager.sandbox is not set: the grading worker sets it before autograding"
            )
        return self.sandbox

    async def _async_pre_start_kernel(self, **kw):
        sandbox = self._sandbox()
        sockets = sandbox.workdir / self.SOCKETS
        # A Unix socket path holds at most 107 bytes (sun_path); the grader connects through the host path.
        if len(f"{sockets}-99".encode()) > 107:
            raise LabGradingError(
                f"the scratch folder {sandbox.workdir} is too long a path for the kernel's sockets "
                "(107 bytes at most): use a shorter scratch root, e.g. under /tmp."
            )
        self.transport = "ipc"
        self.ip = str(sockets)
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        sandbox = self._sandbox()
        # The kernel's own copy of the connection file: the socket paths as it sees them, readable by its uid.
        connection = sandbox.workdir / f"{self.SOCKETS}.json"
        write_connection_file(
            str(connection),
            ip=sandbox.inside(sandbox.workdir / self.SOCKETS),
            key=self.session.key,
            transport="ipc",
            shell_port=self.shell_port,
            iopub_port=self.iopub_port,
            stdin_port=self.stdin_port,
            hb_port=self.hb_port,
            control_port=self.control_port,
            signature_scheme=self.session.signature_scheme,
            kernel_name=self.kernel_name,
        )
        if sandbox.uid is not None:
            os.chown(connection, sandbox.uid, sandbox.uid)
        # The kernel's parent is bwrap's pid 1: nothing for ipykernel to poll, and no console banner to print.
        kernel = [sys.executable, "-P", "-m", "ipykernel_launcher", "-f", sandbox.inside(connection)]
        return sandbox.command([*kernel, "--IPKernelApp.parent_handle=1", *(extra_arguments or [])])
