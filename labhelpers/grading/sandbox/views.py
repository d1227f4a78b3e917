"""The mounts that build a sandbox's view: the system, Python, the lab package (whole, or only the probes), data."""

from __future__ import annotations

import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox.capability import system_links
from labhelpers.grading.sandbox.command import DATA, HOME, package_folder

PROBE_PARTS = ("__init__.py", "seeding.py", "probes/")
"""What the probe view shows of the lab package: the probes and the one seeding function they import."""


def python_roots() -> list[Path]:
    """Return the folders Python needs: its install (sys.base_prefix) and the venv (sys.prefix)."""
    roots = []
    for prefix in dict.fromkeys([sys.base_prefix, sys.prefix, sys.exec_prefix]):
        for path in dict.fromkeys([Path(prefix), Path(prefix).resolve()]):
            if not any(path == root or root in path.parents for root in [Path("/usr"), *roots]):
                roots.append(path)
    return roots


def view_mounts(
    view: str, slot_dir: Path, workdir: Path, data_dir: Path | None, overlays: Mapping[Path, Path]
) -> list[str]:
    """Return the bwrap arguments building the view: system, Python, the lab package (whole or probes), data.

    Args:
        view: "notebook" or "probe".
        slot_dir: the slot's folder (its etc/ holds the sandbox's passwd, group, hosts and an empty file).
        workdir: the scratch folder, bound at HOME, /tmp and /dev/shm.
        data_dir: the SST-2 folder (notebook view), or None.
        overlays: probe view: {file of the venv: file to show there instead}.
    """
    etc = slot_dir / "etc"
    binds = [("--ro-bind-try", f"/etc/{name}", f"/etc/{name}") for name in ("ld.so.cache", "fonts")]
    binds += [("--ro-bind", str(etc / name), f"/etc/{name}") for name in ("passwd", "group", "hosts")]
    binds += [("--ro-bind", str(root.resolve()), str(root)) for root in python_roots()]
    if view == "notebook":
        binds.append(("--ro-bind", str(package_folder()), str(package_folder())))
    else:
        binds += _probe_binds(etc, overlays)
    if view == "notebook" and data_dir is not None:
        binds.append(("--ro-bind", str(Path(data_dir).resolve()), DATA))
    binds += [("--bind", str(workdir), place) for place in (HOME, "/tmp")]
    targets = [Path(bind[-1]) for bind in binds] + [Path("/usr"), Path("/proc"), Path("/dev")]
    return [
        *("--ro-bind", "/usr", "/usr", *system_links()),
        *mount_points(targets),
        *(word for bind in binds for word in bind),  # in order: a later mount covers an earlier one
        *("--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), "/dev/shm"),
        # The root and /dev are bwrap's tmpfs: read-only, so that no write lands in unbounded memory.
        *("--remount-ro", "/dev", "--remount-ro", "/"),
    ]


def _probe_binds(etc: Path, overlays: Mapping[Path, Path]) -> list[tuple[str, ...]]:
    """Return the binds of the probe view's lab package: PROBE_PARTS only, with `overlays` applied."""
    package = package_folder()
    binds: list[tuple[str, ...]] = []
    # Judges, reference code and checks stay outside: only the package's __init__, its seeding and probes exist inside.
    # Installed into the venv (not editable), the package comes with the venv: an empty folder covers it first.
    if any(root in package.parents for root in python_roots()):
        binds.append(("--tmpfs", str(package)))
    for name in PROBE_PARTS:
        part = package / name.rstrip("/")
        if not part.exists():
            raise LabGradingError(f"{part} does not exist: the probe view needs labhelpers/{name}.")
        binds.append(("--ro-bind", str(part), str(part)))
    for target, source in overlays.items():
        binds += overlay(Path(target), Path(source), etc / "empty")
    return binds


def mount_points(targets: list[Path]) -> list[str]:
    """Return bwrap arguments creating the folders that lead to `targets`, open to all (bwrap makes them 0700)."""
    folders: list[Path] = []
    for target in targets:
        for folder in reversed(target.parents[:-1]):
            if folder not in folders and not any(folder == t or t in folder.parents for t in targets):
                folders.append(folder)
    return [word for folder in folders for word in ("--perms", "0755", "--dir", str(folder))]


def overlay(target: Path, source: Path, empty: Path) -> list[tuple[str, str, str]]:
    """Return bwrap arguments showing `source` at `target` (a file of the venv), hiding its compiled copies."""
    if not source.is_file():
        raise LabGradingError(f"overlay source {source} is not a file: give the file to show at {target}.")
    if not target.is_file() or not any(root in target.parents for root in python_roots()):
        raise LabGradingError(
            f"overlay target {target} is not an existing file of the Python environment "
            f"({', '.join(map(str, python_roots()))}): give the path of the module file to replace."
        )
    binds = [("--ro-bind", str(source.resolve()), str(target))]
    if target.suffix == ".py":
        # Python would load a stale compiled copy only if its recorded size and mtime matched; hide them anyway.
        for compiled in sorted((target.parent / "__pycache__").glob(f"{target.stem}.*.pyc")):
            binds.append(("--ro-bind", str(empty), str(compiled)))
    return binds


def check_readable_by_others(path: Path, ancestors: bool, read: bool = True) -> None:
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
