"""A sandbox's processes: found in /proc (by bwrap's argv, uid or working folder), killed, and its folder removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import time
from pathlib import Path

from labhelpers.errors import LabGradingError


def processes(workdir: Path | None, uids: range, by_cwd: bool = False) -> list[int]:
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


def kill(workdir: Path | None, uids: range | int | None, by_cwd: bool = False) -> None:
    """SIGKILL a sandbox's processes until none is left (killing bwrap ends its whole pid namespace).

    Args:
        workdir: the sandbox's workdir (finds its bwrap), or None.
        uids: the sandbox's uid (root), a range of them, or None.
        by_cwd: also kill the processes working in the workdir (see `processes`).
    """
    uids = range(0) if uids is None else range(uids, uids + 1) if isinstance(uids, int) else uids
    for _ in range(100):
        pids = processes(workdir, uids, by_cwd)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    raise LabGradingError(f"sandbox processes {pids} survived SIGKILL for 2 s.")


def remove_tree(folder: Path) -> None:
    """Delete `folder`, also where student code took away the owner's permissions (a normal grader's files)."""

    def allow_and_retry(function, path, _):
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
            shutil.rmtree(path, onerror=allow_and_retry)
        else:
            function(path)

    shutil.rmtree(folder, onerror=allow_and_retry)
