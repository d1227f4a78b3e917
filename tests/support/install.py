"""The lab as a deployment gets it: a wheel of the working tree's package, installed away from the project folder.

A wheel holds `labhelpers/` only (pyproject.toml's package list): no solutions/, no notebooks/, no tests. The hub test
installs it into a copy of the environment; the installed-package tests install it into a folder of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from labhelpers.config import PROJECT_ROOT

VENV = Path(sys.prefix)
"""The project's environment (.venv), whose packages the installed lab uses."""
DEPLOY = PROJECT_ROOT / "deploy"


def build_wheel(folder: Path) -> Path:
    """Build the lab's wheel from the working tree, as pip builds it for a hub; return the .whl path.

    pip builds from a copy of what the wheel is made of (pyproject.toml, README.md, labhelpers/), so that its build
    folders stay out of the project.

    Args:
        folder: an empty folder for the copy and the wheel.
    """
    source = folder / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    shutil.copytree(PROJECT_ROOT / "labhelpers", source / "labhelpers", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--wheel-dir", str(folder), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = folder.glob("labhelpers-*.whl")
    return wheel


def install_into_folder(wheel: Path, target: Path) -> Path:
    """Install `wheel` alone into `target` (pip --target); return `target`, the folder to put first on PYTHONPATH."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
        + [str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def installed_environment(target: Path) -> dict[str, str]:
    """Return the environment in which `python -m labhelpers` runs the lab installed in `target`, not the project's.

    The folder comes first on sys.path, ahead of .venv's packages (whose editable hook would find the project only
    for a package that is not already found).
    """
    return {
        **os.environ,
        "PYTHONPATH": str(target),
        # nbgrader runs the `alembic` executable of the environment.
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def copy_environment(target: Path, wheel: Path, seen_at: Path) -> None:
    """Make `target` the lab's environment as a hub has it: .venv's packages with the lab installed from `wheel`.

    The copy is hard links (seconds, no disk), except what changes: the editable install of the project gives way to
    the wheel (pip removes files, never rewrites them), the scripts' first lines name the interpreter at `seen_at`, and
    the Jupyter settings come from deploy/install-jupyter-settings, as the guide installs them.

    Args:
        target: a folder that does not exist yet, on .venv's filesystem.
        wheel: the lab's wheel (build_wheel).
        seen_at: where the environment is when it runs (e.g. /opt/tljh/user).
    """
    subprocess.run(["cp", "-al", str(VENV), str(target)], check=True)
    shutil.rmtree(target / "node", ignore_errors=True)  # configurable-http-proxy belongs to the hub, not the users
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    for script in (target / "bin").iterdir():
        _point_script_at(script, (str(VENV), str(target)), str(seen_at))
    settings = PROJECT_ROOT / "jupyter"
    for path in settings.rglob("*"):
        if path.is_file():
            (target / path.relative_to(settings)).unlink(missing_ok=True)  # the copy's came from .venv: not the test
    subprocess.run([str(DEPLOY / "install-jupyter-settings"), str(target)], check=True, capture_output=True)


def _point_script_at(script: Path, old_prefixes: tuple[str, ...], new_prefix: str) -> None:
    """Rewrite a script whose #! line names an old prefix's interpreter so that it names `new_prefix`'s (a new file)."""
    if script.is_symlink() or not script.is_file():
        return
    with open(script, "rb") as handle:
        first = handle.readline()
    if not first.startswith(b"#!"):
        return
    line = first.decode()
    for old in old_prefixes:
        line = line.replace(f"{old}/bin/", f"{new_prefix}/bin/")
    if line.encode() == first:
        return
    body = script.read_bytes()[len(first) :]
    mode = script.stat().st_mode
    script.unlink()  # a hard link of .venv's script: write a file of its own
    script.write_bytes(line.encode() + body)
    script.chmod(mode)
