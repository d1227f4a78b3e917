"""Sandbox uids (root grader only): one per slot and view, from a range that one grading run holds machine-wide."""

from __future__ import annotations

import fcntl
import os
import pwd
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox.command import MAX_SLOTS, VIEWS
from labhelpers.grading.sandbox.processes import kill, processes

FIRST_UID = 200_000
"""Sandbox uids (root only) start here: above the 16-bit ids of accounts and systemd's dynamic users (61184-65519)."""
UIDS_PER_RUN = len(VIEWS) * MAX_SLOTS
RUN_RANGES = (2**31 - FIRST_UID) // UIDS_PER_RUN
"""uid ranges of UIDS_PER_RUN ids (below 2**31): grading runs on one machine at the same time each hold one."""
UID_REGISTRY = Path("/run/dora-lab")
"""Root-only folder recording which scratch root (grading run) holds which uid range; /run is emptied at boot."""


def slot_uid(scratch_root: Path, slot: int, view: str) -> int:
    """Return the uid of the `view` sandbox of `slot` in the grading run of `scratch_root` (claiming its range once)."""
    return run_first_uid(scratch_root) + len(VIEWS) * slot + VIEWS.index(view)


def run_first_uid(scratch_root: Path) -> int:
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
        taken = subordinate_ids()
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
            if (ours and holds(Path(os.readlink(claim)), first)) or has_account(uids):
                index += 1
                continue
            if ours:
                kill(None, uids)  # leftovers of one of our runs that crashed
            elif processes(None, uids):
                index += 1  # someone else's processes run with these uids
                continue
            claim.unlink(missing_ok=True)
            os.symlink(scratch_root, claim)
            marker.write_text(str(first))
            return first
    raise LabGradingError(
        f"no free sandbox uid range below {FIRST_UID + RUN_RANGES * UIDS_PER_RUN} (see {UID_REGISTRY})."
    )


def holds(scratch_root: Path, first: int) -> bool:
    """True while the grading run of `scratch_root` still holds the range starting at `first`."""
    try:
        return (scratch_root / ".sandbox-uids").read_text() == str(first)
    except (OSError, ValueError):
        return False


def has_account(uids: range) -> bool:
    """True when an account (/etc/passwd, NSS) has one of `uids`."""
    for uid in uids:
        try:
            pwd.getpwuid(uid)
            return True
        except KeyError:
            pass
    return False


def subordinate_ids(tables: tuple[str, ...] = ("/etc/subuid", "/etc/subgid")) -> list[tuple[int, int]]:
    """Return the [start, end) ranges of /etc/subuid and /etc/subgid (uids that users' rootless containers use)."""
    ranges = []
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    return ranges
