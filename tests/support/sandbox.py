"""Running a sandbox scenario as either grader: root (one uid per slot) or a normal user (bwrap's user namespace).

A scenario is a function of a test module that returns JSON data. The root grader runs it in the test process; the
normal grader runs every scenario its module lists in USER_CALLS in one subprocess switched to an unprivileged uid,
so that the module pays for one Python start-up, not one per scenario.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.sandbox import problem

GRADERS = ["root", "user"]
GRADER_UID = 59_999
"""The unprivileged instructor of the "user" grader (no account needed)."""
PACKAGE = PROJECT_ROOT / "labhelpers"

needs_bwrap = pytest.mark.skipif(bool(problem()), reason=f"bubblewrap is unusable here: {problem()}")


def as_grader(grader: str, scenario, **kwargs):
    """Return `scenario(**kwargs)`, run by the root or a normal grader.

    The normal grader's scenarios (the USER_CALLS of the scenario's module) all run in one subprocess.
    """
    if grader == "root":
        if os.geteuid() != 0:
            pytest.skip("the root grader needs root")
        return scenario(**kwargs)
    if os.geteuid() != 0:
        return scenario(**kwargs)
    outcome = _user_results(scenario.__module__).get(_call_key(scenario.__name__, kwargs))
    assert outcome is not None, f"add {scenario.__name__}({kwargs}) to USER_CALLS of {scenario.__module__}"
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


def _call_key(name: str, kwargs: dict) -> str:
    return json.dumps([name, kwargs], sort_keys=True)


@functools.cache
def _user_results(module: str) -> dict:
    """Run every USER_CALLS scenario of `module` in one subprocess switched to GRADER_UID; return {call: outcome}."""
    calls = [[scenario.__name__, kwargs] for scenario, kwargs in sys.modules[module].USER_CALLS]
    code = (
        f"import json, sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); from tests.support.sandbox import run_calls; "
        f"print('RESULT' + json.dumps(run_calls({module!r}, json.loads(sys.argv[1]))))"
    )
    home = tempfile.mkdtemp(prefix="grader-home-")
    os.chown(home, GRADER_UID, GRADER_UID)
    drop = ["setpriv", f"--reuid={GRADER_UID}", f"--regid={GRADER_UID}", "--clear-groups", "--"]
    environment = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}"]
    command = [*host_view(), *drop, *environment, sys.executable, "-P", "-c", code, json.dumps(calls)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=home)
    finally:
        subprocess.run(["rm", "-rf", home], check=True)
    results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    assert completed.returncode == 0 and results, completed.stdout[-2000:] + completed.stderr[-4000:]
    return json.loads(results[-1].removeprefix("RESULT"))


def run_calls(module: str, calls: list) -> dict:
    """Run [[scenario name, kwargs], ...] of `module` here; return {call: {"result": ...} or {"error": traceback}}."""
    scenarios = importlib.import_module(module)
    results = {}
    for name, kwargs in calls:
        try:
            results[_call_key(name, kwargs)] = {"result": getattr(scenarios, name)(**kwargs)}
        except Exception:
            results[_call_key(name, kwargs)] = {"error": traceback.format_exc()}
    return results


def closed_folders() -> dict[Path, Path]:
    """Return {Python folder: the first folder above it that other users cannot enter} (e.g. a Python under /root)."""
    found = {}
    for prefix in dict.fromkeys([Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]):
        closed = next((p for p in reversed(prefix.parents) if not p.stat().st_mode & 0o001), None)
        if closed is not None:
            found[prefix] = closed
    return found


def host_view() -> list[str]:
    """Return a bwrap prefix showing the host as it is, except that closed folders above Python show only Python.

    An instructor without root could not run a Python installed under /root; on such a machine this is the view
    of one who could.
    """
    arguments = [shutil.which("bwrap"), "--dev-bind", "/", "/", "--die-with-parent"]
    for prefix, closed in closed_folders().items():
        arguments += ["--tmpfs", str(closed)]
        for folder in [p for p in reversed(prefix.parents) if closed in p.parents]:
            arguments += ["--perms", "0755", "--dir", str(folder)]
        arguments += ["--ro-bind", str(prefix), str(prefix)]
    return arguments


def data_folder(scratch: Path) -> Path:
    """Make a stand-in SST-2 folder in `scratch` (the sandbox only binds it), readable by a sandbox uid."""
    folder = scratch / "sst2"
    folder.mkdir(mode=0o755)
    (folder / "train.tsv").write_text("sentence\tlabel\n")
    (folder / "train.tsv").chmod(0o644)
    return folder


def run_inside(sandbox, code: str, request=None, timeout: float = 120) -> dict:
    """Run Python `code` in `sandbox` with `request` as JSON on stdin; return the JSON its last line prints."""
    completed = subprocess.run(
        sandbox.command([sys.executable, "-P", "-c", code]),
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


def alive_with(marker: str, program: str = "") -> list[int]:
    """Return the host pids whose command line holds `marker` (and that run `program`, if given)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv and os.path.basename(argv[0]).decode().startswith(program):
                found.append(int(entry.name))
    return found
