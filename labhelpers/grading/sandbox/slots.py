"""Make and remove one slot's sandbox: a fresh scratch folder, its /etc files, its uid, its view and environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox.capability import is_root
from labhelpers.grading.sandbox.command import (
    DATA,
    HOME,
    MAX_SLOTS,
    VIEWS,
    Limits,
    Sandbox,
    environment,
    package_folder,
)
from labhelpers.grading.sandbox.diagnosis import require_isolation
from labhelpers.grading.sandbox.processes import kill, remove_tree
from labhelpers.grading.sandbox.uids import slot_uid
from labhelpers.grading.sandbox.views import check_readable_by_others, python_roots, view_mounts

DEFAULT_LIMITS = Limits()
"""The limits of a sandbox made without any (Limits is frozen: one shared default is safe)."""


def make_sandbox(
    scratch_root: Path,
    slot: int,
    view: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    data_dir: Path | None = None,
    overlays: Mapping[Path, Path] | None = None,
    isolate: bool = True,
) -> Sandbox:
    """Create a fresh scratch folder for one slot and the Sandbox that runs code in it.

    Args:
        scratch_root: a folder of this grading run that only the grader may write (e.g. a fresh tempfile.mkdtemp);
            it also identifies the run's uid range when the grader is root.
        slot: a number below MAX_SLOTS, unique among the sandboxes of one view running at the same time.
        view: "notebook" (the whole lab package and `data_dir` at /data/sst2) or "probe" (only
            labhelpers/__init__.py, labhelpers/seeding.py and labhelpers/probes/, with `overlays` applied, no data).
        limits: the resource limits.
        data_dir: the SST-2 folder (notebook view).
        overlays: probe view: {file of the venv: file to show there instead}.
        isolate: build it with bubblewrap (raises SandboxUnavailable, with the fix, where bwrap cannot isolate);
            False (`dora-lab grade --no-sandbox`): no bubblewrap, the code runs with the resource limits only.

    Returns:
        The Sandbox; a previous sandbox of the same slot and view is killed and removed first.
    """
    if view not in VIEWS:
        raise LabGradingError(f"view {view!r} is not one of {', '.join(VIEWS)}.")
    if not 0 <= slot < MAX_SLOTS:
        raise LabGradingError(f"slot {slot} is outside 0..{MAX_SLOTS - 1}: grade at most {MAX_SLOTS} at once.")
    bwrap = require_isolation() if isolate else None
    scratch_root = Path(scratch_root).resolve()
    uid = slot_uid(scratch_root, slot, view) if is_root() else None
    slot_dir = scratch_root / f"{view}-{slot}"
    if slot_dir.exists():
        kill(slot_dir / "home", uid)
        remove_tree(slot_dir)
    workdir = slot_dir / "home"
    _make_folders(slot_dir, uid)
    if bwrap:
        data = DATA if data_dir is not None else None
        mounts = tuple(view_mounts(view, slot_dir, workdir, data_dir, overlays or {}))
    else:
        data = str(Path(data_dir).resolve()) if data_dir is not None else None
        mounts = ()
    if uid is not None:
        _check_uid_reaches(slot_dir, data_dir, through_host=not bwrap)
    env = environment(HOME if bwrap else str(workdir), view, data, limits)
    return Sandbox(workdir, view, uid, limits, env, mounts, bwrap)


def _make_folders(slot_dir: Path, uid: int | None) -> None:
    """Create the slot's folder: its workdir (home/, owned by `uid`) and etc/ (passwd, group, hosts, an empty file)."""
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


def _check_uid_reaches(slot_dir: Path, data_dir: Path | None, through_host: bool) -> None:
    """Raise when the slot's uid could not read what its sandbox shows (Python, the package, the data).

    bwrap binds as root, but the code runs as the slot's uid: it must be allowed to read what it sees; without
    bwrap (`through_host`) it must also be able to walk there (and to its workdir) through the host's folders.
    """
    needed = [*python_roots(), package_folder(), *([Path(data_dir)] if data_dir is not None else [])]
    for path in needed:
        check_readable_by_others(path.resolve(), ancestors=through_host)
    if through_host:
        check_readable_by_others(slot_dir, ancestors=True, read=False)


def remove_sandbox(sandbox: Sandbox) -> None:
    """Kill every process of the sandbox and delete its scratch folder."""
    kill(sandbox.workdir, sandbox.uid, by_cwd=not sandbox.bwrap and sandbox.uid is None)
    slot_dir = sandbox.workdir.parent
    if slot_dir.exists():
        remove_tree(slot_dir)
