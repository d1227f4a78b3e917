"""The grading sandbox (bubblewrap): what student code can see, write, reach and use, as root and as a normal grader.

Every case runs real code in a real bwrap sandbox, and kernels through SandboxKernelManager and SandboxedExecute.
Each scenario runs twice: as the "root" grader (in this process: one unprivileged uid per slot) and as a "user"
grader (the same scenario in a subprocess switched to an unprivileged uid: bwrap's user namespace is the isolation).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labhelpers.config import PROJECT_ROOT
from labhelpers.course import SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import (
    DATA,
    FIRST_UID,
    HOME,
    UIDS_PER_RUN,
    Limits,
    SandboxKernelManager,
    make_sandbox,
    problem,
    remove_sandbox,
)

GRADERS = ["root", "user"]
GRADER_UID = 59_999
"""The unprivileged instructor of the "user" grader (no account needed)."""
PACKAGE = PROJECT_ROOT / "labhelpers"
PEFT_DORA = Path(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
PEFT_DORA = PEFT_DORA / "peft" / "tuners" / "lora" / "dora.py"

needs_bwrap = pytest.mark.skipif(bool(problem()), reason=f"bubblewrap is unusable here: {problem()}")


def test_bubblewrap_is_usable_here():
    assert problem() == "", problem()


# --- running a scenario as either grader --------------------------------------------------------------------------


def as_grader(grader: str, scenario, **kwargs):
    """Return `scenario(**kwargs)`, a function of this module returning JSON data, run by the root or a normal grader.

    The normal grader's scenarios (USER_CALLS, at the end) all run in one subprocess: one Python start-up for all.
    """
    if grader == "root":
        if os.geteuid() != 0:
            pytest.skip("the root grader needs root")
        return scenario(**kwargs)
    if os.geteuid() != 0:
        return scenario(**kwargs)
    outcome = _user_results().get(_call_key(scenario.__name__, kwargs))
    assert outcome is not None, f"add {scenario.__name__}({kwargs}) to USER_CALLS"
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


def _call_key(name: str, kwargs: dict) -> str:
    return json.dumps([name, kwargs], sort_keys=True)


@functools.cache
def _user_results() -> dict:
    """Run every USER_CALLS scenario in one subprocess switched to GRADER_UID; return {call: result or error}."""
    calls = [[scenario.__name__, kwargs] for scenario, kwargs in USER_CALLS]
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_sandbox as t; "
        f"print('RESULT' + json.dumps(t.run_calls(json.loads(sys.argv[1]))))"
    )
    home = tempfile.mkdtemp(prefix="grader-home-")
    os.chown(home, GRADER_UID, GRADER_UID)
    drop = ["setpriv", f"--reuid={GRADER_UID}", f"--regid={GRADER_UID}", "--clear-groups", "--"]
    environment = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}"]
    command = [*_host_view(), *drop, *environment, sys.executable, "-P", "-c", code, json.dumps(calls)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=home)
    finally:
        subprocess.run(["rm", "-rf", home], check=True)
    results = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    assert completed.returncode == 0 and results, completed.stdout[-2000:] + completed.stderr[-4000:]
    return json.loads(results[-1].removeprefix("RESULT"))


def run_calls(calls: list) -> dict:
    """Run [[scenario name, kwargs], ...] here; return {call: {"result": ...} or {"error": traceback}}."""
    results = {}
    for name, kwargs in calls:
        try:
            results[_call_key(name, kwargs)] = {"result": globals()[name](**kwargs)}
        except Exception:
            results[_call_key(name, kwargs)] = {"error": traceback.format_exc()}
    return results


def _closed_folders() -> dict[Path, Path]:
    """Return {Python folder: the first folder above it that other users cannot enter} (e.g. a Python under /root)."""
    found = {}
    for prefix in dict.fromkeys([Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]):
        closed = next((p for p in reversed(prefix.parents) if not p.stat().st_mode & 0o001), None)
        if closed is not None:
            found[prefix] = closed
    return found


def _host_view() -> list[str]:
    """Return a bwrap prefix showing the host as it is, except that closed folders above Python show only Python.

    An instructor without root could not run a Python installed under /root; on such a machine this is the view
    of one who could.
    """
    arguments = [shutil.which("bwrap"), "--dev-bind", "/", "/", "--die-with-parent"]
    for prefix, closed in _closed_folders().items():
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


def _sleepers(count: int, seconds: str) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", seconds]) for _ in range(count)]


def _alive_with(marker: str, program: str = "") -> list[int]:
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


# --- what the code sees, writes and reaches ------------------------------------------------------------------------

INSPECT = r"""
import json, os, signal, socket, sys
request = json.load(sys.stdin)
seen = {path: os.path.exists(path) for path in request["paths"]}
wrote = {}
for path in request["writes"]:
    try:
        open(path, "a").close()
        wrote[path] = "written"
    except OSError as error:
        wrote[path] = type(error).__name__
files = []
for top, folders, names in os.walk("/"):
    folders[:] = [f for f in folders if os.path.join(top, f) not in request["prune"]]
    files += [os.path.join(top, name) for name in names]
try:
    socket.create_connection(("127.0.0.1", request["port"]), timeout=5).close()
    network = "connected"
except OSError as error:
    network = type(error).__name__
try:
    os.kill(request["grader_pid"], 0)
    grader = "visible"
except OSError as error:
    grader = type(error).__name__
pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
processes = sorted(os.path.basename(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode()) for pid in pids)
leaks = [name for name, value in os.environ.items() if request["token"] in value]
for pid in pids:
    try:
        if request["token"].encode() in open(f"/proc/{pid}/environ", "rb").read():
            leaks.append(f"/proc/{pid}/environ")
    except OSError:
        pass
open("/tmp/written-in-tmp", "w").close()
import subprocess
namespaces = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode
print(json.dumps(dict(
    seen=seen, wrote=wrote, files=sorted(files), network=network, grader=grader, processes=processes, leaks=leaks,
    namespaces="refused" if namespaces else "created",
    interfaces=[name for _, name in socket.if_nameindex()], cwd=os.getcwd(), uid=os.getuid(),
    env={name: os.environ.get(name) for name in ("HOME", "TMPDIR", "LAB_DATA_DIR", "LAB_OUTPUT_DIR", "LAB_FAST")},
)))
"""


def inspect_view(view: str, canaries: dict[str, str]) -> dict:
    """Run INSPECT in a `view` sandbox beside a sibling sandbox holding a canary file; return what it found."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        data = data_folder(scratch)
        sandbox = make_sandbox(scratch, 0, view, data_dir=data)
        sibling = make_sandbox(scratch, 1, view, data_dir=data)
        (sibling.workdir / "classmate.ipynb").write_text("{}")
        paths = {
            **canaries,
            "a sibling sandbox's file": str(sibling.workdir / "classmate.ipynb"),
            "the data folder at its host path": str(data / "train.tsv"),
        }
        prune = ["/proc", "/dev", "/usr", "/etc/fonts", HOME, "/tmp", str(PACKAGE), DATA]
        prune += [str(p) for p in {Path(sys.prefix), Path(sys.base_prefix)}]
        writes = [str(PACKAGE / "written"), str(Path(sys.prefix) / "written"), "/written", "/etc/written"]
        writes += ["/dev/written", "/home/written", str(scratch / "written"), f"{DATA}/written"]
        token = secrets.token_hex(8)
        request = dict(
            paths=list(paths.values()),
            writes=writes,
            prune=prune,
            port=listener.getsockname()[1],
            grader_pid=os.getpid(),
            token=token,
        )
        # A secret in the grader's environment (an API token, say) must reach no process of the sandbox.
        os.environ["DL_GRADER_SECRET"] = token
        try:
            report = run_inside(sandbox, INSPECT, request)
        finally:
            del os.environ["DL_GRADER_SECRET"]
        report["seen"] = {name: report["seen"][path] for name, path in paths.items()}
        try:
            listener.accept()
            report["listener"] = "accepted a connection"
        except BlockingIOError:
            report["listener"] = "nothing"
        report["tmp_file_in_workdir"] = (sandbox.workdir / "written-in-tmp").is_file()
        report["sandbox_uid"] = sandbox.uid
        for made in (sandbox, sibling):
            remove_sandbox(made)
        return report
    finally:
        listener.close()
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


TOKEN = secrets.token_hex(4)
PLANTED = [Path("/root", f"dl-canary-{TOKEN}"), Path(tempfile.gettempdir(), f"dl-canary-{TOKEN}")]
CANARIES = {
    "root's home": str(PLANTED[0]),
    "the host /tmp": str(PLANTED[1]),
    "the solutions notebook": str(SOURCE_NOTEBOOK),
    "the project folder": str(PROJECT_ROOT / "pyproject.toml"),
    "the lab's checks": str(PACKAGE / "checks"),
    "the grading code": str(PACKAGE / "grading" / "sandbox.py"),
    "the data folder at /data/sst2": f"{DATA}/train.tsv",
    "the lab package": str(PACKAGE / "config.py"),
    "the probes": str(PACKAGE / "probes"),
}
"""Files a search of the disk must not find (in /root, the host /tmp, the solutions), and the lab's own files."""


@pytest.fixture(scope="module")
def canaries():
    if os.geteuid() == 0:
        for path in PLANTED:
            path.write_text("solutions copy")
            path.chmod(0o644)
    yield CANARIES
    for path in PLANTED:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module", params=[(g, v) for g in GRADERS for v in ("notebook", "probe")], ids="-".join)
def view_report(request, canaries):
    grader, view = request.param
    return grader, view, as_grader(grader, inspect_view, view=view, canaries=canaries)


# (what, visible in the notebook view, visible in the probe view)
VISIBILITY = [
    ("root's home", False, False),
    ("the host /tmp", False, False),
    ("a sibling sandbox's file", False, False),
    ("the solutions notebook", False, False),
    ("the project folder", False, False),
    ("the data folder at its host path", False, False),
    ("the grading code", True, False),
    ("the lab's checks", True, False),
    ("the lab package", True, False),
    ("the data folder at /data/sst2", True, False),
    ("the probes", True, True),
]


@needs_bwrap
@pytest.mark.parametrize("what, in_notebook, in_probe", VISIBILITY, ids=[case[0] for case in VISIBILITY])
def test_sees_only_what_its_view_needs(view_report, what, in_notebook, in_probe):
    _, view, report = view_report
    assert report["seen"][what] == (in_notebook if view == "notebook" else in_probe)


@needs_bwrap
def test_a_search_of_the_disk_finds_only_the_sandbox_files(view_report):
    # Outside the pruned folders (system, Python, package, data, home) the whole tree is these four files.
    assert view_report[2]["files"] == ["/etc/group", "/etc/hosts", "/etc/ld.so.cache", "/etc/passwd"]


@needs_bwrap
def test_writes_land_only_in_the_workdir(view_report):
    report = view_report[2]
    assert set(report["wrote"].values()) <= {"OSError", "PermissionError", "FileNotFoundError"}, report["wrote"]
    assert report["tmp_file_in_workdir"], "/tmp inside is the workdir"


@needs_bwrap
def test_has_no_network(view_report):
    report = view_report[2]
    assert report["network"] == "ConnectionRefusedError" and report["listener"] == "nothing"
    assert report["interfaces"] == ["lo"]


@needs_bwrap
def test_cannot_make_namespaces_of_its_own(view_report):
    # A user namespace of its own could mount a tmpfs: memory that RLIMIT_AS does not count.
    assert view_report[2]["namespaces"] == "refused"


@needs_bwrap
def test_cannot_see_or_signal_the_grader(view_report):
    report = view_report[2]
    assert report["grader"] == "ProcessLookupError"
    assert set(report["processes"]) == {"bwrap", "python"}, report["processes"]


@needs_bwrap
def test_environment_is_the_sandboxs_own(view_report):
    grader, view, report = view_report
    data = DATA if view == "notebook" else None
    assert report["env"] == dict(
        HOME=HOME, TMPDIR=HOME, LAB_DATA_DIR=data, LAB_OUTPUT_DIR=f"{HOME}/outputs", LAB_FAST="1"
    )
    assert report["cwd"] == HOME
    assert report["leaks"] == [], "the grader's environment is readable inside"
    if grader == "root":
        assert report["uid"] == report["sandbox_uid"] >= FIRST_UID
    else:
        assert report["uid"] == GRADER_UID


# --- limits ----------------------------------------------------------------------------------------------------------

LIMITS = Limits(memory_bytes=2**30, max_processes=32, max_file_bytes=2**20, threads=1)

MEASURE_LIMITS = r"""
import json, os, resource, sys, time
result = {}
try:
    bytearray(2 * 2**30)
    result["memory"] = "allocated"
except MemoryError:
    result["memory"] = "MemoryError"
try:
    with open("big", "wb") as handle:
        handle.write(b"x" * (2**20 + 1))
    result["file"] = "written"
except OSError as error:
    result["file"] = os.strerror(error.errno)
result["core"] = resource.getrlimit(resource.RLIMIT_CORE)
result["no_new_privs"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0]
def in_my_namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
    except PermissionError:  # a process outside it (bwrap's, as root)
        return False
mine = [p for p in os.listdir("/proc") if p.isdigit() and os.stat(f"/proc/{p}").st_uid == os.getuid() and in_my_namespace(p)]
result["tasks_before"] = sum(len(os.listdir(f"/proc/{p}/task")) for p in mine)
children = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    result["forks"] = "unlimited"
except BlockingIOError:
    result["forks"] = len(children)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps(result))
"""


def measure_limits(grader_processes: int) -> dict:
    """Run MEASURE_LIMITS in a sandbox under LIMITS while the grader itself runs `grader_processes` processes."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    busy = _sleepers(grader_processes, "120")
    try:
        sandbox = make_sandbox(scratch, 0, "notebook", LIMITS)
        report = run_inside(sandbox, MEASURE_LIMITS)
        remove_sandbox(sandbox)
        return report
    finally:
        for process in busy:
            process.kill()
            process.wait()
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_limits_hold(grader):
    # The grader runs more processes of its own than the sandbox may: they must not count against it.
    report = as_grader(grader, measure_limits, grader_processes=LIMITS.max_processes + 8)
    assert report["memory"] == "MemoryError"
    assert report["file"] == "File too large"
    assert report["core"] == [0, 0] and report["no_new_privs"] == "1"
    # RLIMIT_NPROC counts the sandbox's own tasks (its uid's, in its user namespace): it may start exactly the rest.
    assert report["forks"] == LIMITS.max_processes - report["tasks_before"], report


# --- no process left behind ----------------------------------------------------------------------------------------

DETACH = r"""
import os, subprocess, sys
subprocess.Popen(["sleep", sys.argv[1]], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", sys.argv[1]])
os.execvp("sleep", ["sleep", sys.argv[1]])
"""


def _sleepers_started(marker: str, count: int = 3, seconds: float = 60) -> int:
    """Wait until `count` sleeps with `marker` run (the detached ones exec a moment later); return how many run."""
    deadline = time.time() + seconds
    while len(_alive_with(marker, "sleep")) < count and time.time() < deadline:
        time.sleep(0.05)
    return len(_alive_with(marker, "sleep"))


def remove_leaves_nothing() -> dict:
    """Start detached processes in a sandbox, remove it; return what is left of it."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    marker = f"{1000 + secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    try:
        sandbox = make_sandbox(scratch, 0, "notebook")
        top = subprocess.Popen(sandbox.command([sys.executable, "-P", "-c", DETACH, marker]))
        started = _sleepers_started(marker)
        remove_sandbox(sandbox)
        top.wait(timeout=10)
        return dict(started=started, left=_alive_with(marker), folder=sandbox.workdir.parent.exists())
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


GRADER = r"""
import subprocess, sys, time
from pathlib import Path
from labhelpers.grading.sandbox import make_sandbox
sandbox = make_sandbox(Path(sys.argv[1]), 0, "notebook")
subprocess.Popen(sandbox.command([sys.executable, "-P", "-c", sys.argv[2], sys.argv[3]]))
time.sleep(600)
"""


def grader_death_leaves_nothing() -> dict:
    """Start a grader that starts detached sandboxed processes, kill the grader; return what is left."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    marker = f"{1000 + secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    try:
        grader = subprocess.Popen([sys.executable, "-P", "-c", GRADER, str(scratch), DETACH, marker])
        started = _sleepers_started(marker)
        grader.kill()
        grader.wait()
        deadline = time.time() + 5
        while _alive_with(marker) and time.time() < deadline:
            time.sleep(0.05)
        return dict(started=started, left=_alive_with(marker))
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_remove_sandbox_leaves_no_process_and_no_folder(grader):
    report = as_grader(grader, remove_leaves_nothing)
    assert report == dict(started=3, left=[], folder=False)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_a_killed_grader_leaves_no_process(grader):
    assert as_grader(grader, grader_death_leaves_nothing) == dict(started=3, left=[])


# --- the probe view's overlay ----------------------------------------------------------------------------------------

IMPORT_DORA = r"""
import json
import peft.tuners.lora.dora as dora
try:
    dora.DoraLinearLayer()
    layer = "built"
except Exception as error:
    layer = type(error).__name__
try:
    import labhelpers.checks
    checks = "imported"
except ModuleNotFoundError:
    checks = "ModuleNotFoundError"
print(json.dumps(dict(file=dora.__file__, layer=layer, checks=checks)))
"""
PEFT_DORA_STUB = PACKAGE / "grading" / "peft_dora_stub.py"


def import_with_overlay() -> dict:
    """Import PEFT's DoRA module in a probe sandbox whose overlay shows the grader's stub in its place."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-sandbox-"))
    try:
        sandbox = make_sandbox(scratch, 0, "probe", overlays={PEFT_DORA: PEFT_DORA_STUB})
        report = run_inside(sandbox, IMPORT_DORA, timeout=300)
        remove_sandbox(sandbox)
        return report
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


@needs_bwrap
@pytest.mark.parametrize("grader", GRADERS)
def test_overlay_is_what_import_sees(grader):
    report = as_grader(grader, import_with_overlay)
    assert report == dict(file=str(PEFT_DORA), layer="ReferenceUnavailable", checks="ModuleNotFoundError")


def test_overlay_outside_the_environment_is_refused(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text("")
    with pytest.raises(LabGradingError, match="not an existing file of the Python environment"):
        make_sandbox(tmp_path, 0, "probe", overlays={PACKAGE / "checks" / "core.py": stub})


# --- uids: one per slot and view, never shared by two grading runs ---------------------------------------------------


@needs_bwrap
def test_uids_are_distinct_per_slot_view_and_run():
    if os.geteuid() != 0:
        pytest.skip("sandbox uids are the root grader's")
    first, second = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    try:
        made = [
            make_sandbox(root, slot, view)
            for root in (first, second)
            for slot in (0, 1)
            for view in ("notebook", "probe")
        ]
        uids = [sandbox.uid for sandbox in made]
        assert len(set(uids)) == 8 and all(uid >= FIRST_UID for uid in uids)
        assert max(uids[:4]) - min(uids[:4]) < UIDS_PER_RUN and abs(uids[4] - uids[0]) >= UIDS_PER_RUN
        for sandbox in made:
            remove_sandbox(sandbox)
        subprocess.run(["rm", "-rf", str(first)], check=True)
        # A finished run's range is free again.
        third = Path(tempfile.mkdtemp())
        assert make_sandbox(third, 0, "notebook").uid == uids[0]
        subprocess.run(["rm", "-rf", str(third)], check=True)
    finally:
        subprocess.run(["rm", "-rf", str(first), str(second)], check=True)


# --- without bubblewrap ----------------------------------------------------------------------------------------------

WITHOUT_BWRAP = r"""
import json, os, subprocess, sys, tempfile
from pathlib import Path
from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import Limits, make_sandbox, problem, remove_sandbox
scratch = Path(tempfile.mkdtemp())
scratch.chmod(0o711)
code = "import os\ntry:\n    bytearray(2**31)\nexcept MemoryError:\n    print(os.getcwd(), os.getuid(), 'MemoryError')"
try:
    sandbox = make_sandbox(scratch, 0, "notebook", Limits(memory_bytes=2**30))
except LabGradingError as error:
    print(json.dumps(dict(problem=problem(), refused=str(error))))
    raise SystemExit
completed = subprocess.run(sandbox.command([sys.executable, "-P", "-c", code]), capture_output=True, text=True)
remove_sandbox(sandbox)
print(json.dumps(dict(problem=problem(), out=completed.stdout.strip(), workdir=str(sandbox.workdir))))
"""


def without_bwrap(python_readable: bool) -> dict:
    """Run WITHOUT_BWRAP where bwrap is not on PATH; as root, in a view where Python is readable by others or not."""
    view = _host_view() if python_readable and os.geteuid() == 0 else []
    completed = subprocess.run(
        [*view, sys.executable, "-P", "-c", WITHOUT_BWRAP],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "HOME": os.environ.get("HOME", "/")},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


# (grader, Python readable by the sandbox uid, what happens)
WITHOUT_BWRAP_CASES = [
    ("user", True, "runs as the grader with the limits"),
    ("root", True, "runs as the slot's uid with the limits"),
    ("root", False, "is refused: the slot's uid could not run Python"),
]


@pytest.mark.parametrize(
    "grader, python_readable, outcome", WITHOUT_BWRAP_CASES, ids=[c[2] for c in WITHOUT_BWRAP_CASES]
)
def test_without_bwrap_the_loss_is_explained(grader, python_readable, outcome):
    if grader == "root" and not python_readable and not _closed_folders():
        pytest.skip("Python is readable by other users on this machine")
    report = as_grader(grader, without_bwrap, python_readable=python_readable)
    assert "apt-get install bubblewrap" in report["problem"] and "reach the network" in report["problem"]
    if not python_readable:
        assert "cannot be entered by other users" in report["refused"]
        return
    workdir, uid, error = report["out"].split()
    assert (workdir, error) == (report["workdir"], "MemoryError")
    assert int(uid) >= FIRST_UID if grader == "root" else int(uid) == GRADER_UID


# --- kernels: nbgrader's Execute through SandboxKernelManager --------------------------------------------------------

WHERE = (
    "import importlib.util, os\n"
    "print(os.getcwd(), os.environ.get('LAB_DATA_DIR'), importlib.util.find_spec('labhelpers.checks') is not None)"
)
SLEEP = "import time\ntime.sleep(600)"
IGNORE_INTERRUPT = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
FLOOD = "for _ in range(2000):\n    print('spam ' * 200)"
HOLD_MEMORY = "import numpy as np\nhog = []\nwhile True:\n    hog.append(np.empty(2**26, dtype=np.uint8))"
NEXT = "print('next')"
CUT = "stderr [output truncated by the grader]: more than 100000 bytes"
CELL_SECONDS = 4
"""Cell time-out and interrupt grace of the kernel cases (a loaded 2-core machine imports numpy in under 4 s)."""
TIMEOUT = f"time-out ({CELL_SECONDS} s) in cell answer"

# (name, view, answer cell, expected outputs of the answer cell and of the cell after it, expected events);
# an output reads "<stream name> <its first line>" or "error <ename>".
KERNEL_CASES = [
    ("notebook view", "notebook", WHERE, [f"stdout {HOME} {DATA} True"], ["stdout next"], []),
    ("probe view", "probe", WHERE, [f"stdout {HOME} None False"], ["stdout next"], []),
    (
        "a time-out interrupts time.sleep and the notebook goes on",
        "notebook",
        SLEEP,
        ["error KeyboardInterrupt", "error CellTimeoutError"],
        ["stdout next"],
        [TIMEOUT],
    ),
    (
        "a cell ignoring the interrupt gets the kernel killed",
        "notebook",
        IGNORE_INTERRUPT,
        ["error KernelStopped"],
        ["error NotRun"],
        [
            TIMEOUT,
            f"the kernel was stopped: the cell ignored the interrupt after its time-out of {CELL_SECONDS} s in cell answer",
        ],
    ),
    (
        "os._exit is reported and later cells are not run",
        "notebook",
        "import os\nos._exit(0)",
        ["error KernelStopped"],
        ["error NotRun"],
        ["the kernel exited with code 0 in cell answer"],
    ),
    (
        "an output flood is capped",
        "notebook",
        FLOOD,
        ["stdout " + "spam " * 199 + "spam", CUT],  # the start of the flood, then the note
        ["stdout next"],
        ["output truncated in cell answer"],
    ),
    (
        "an allocation over the cap is a MemoryError and the kernel goes on",
        "notebook",
        "x = bytearray(4 * 2**30)",
        ["error MemoryError"],
        ["stdout next"],
        ["the memory cap was reached in cell answer"],
    ),
    (
        "a kernel still holding the cap is stopped",
        "notebook",
        HOLD_MEMORY,
        ["error MemoryError"],
        ["error NotRun"],
        ["the memory cap (2 GiB) was reached and still held in cell answer: kernel stopped"],
    ),
]


def run_kernel_cases() -> dict:
    """Execute each KERNEL_CASES notebook with SandboxedExecute in its own sandbox; return outputs and events."""
    from labhelpers.grading.execute import SandboxedExecute

    results = {}
    for name, view, answer, *_ in KERNEL_CASES:
        scratch, sandbox = Path(tempfile.mkdtemp(prefix="dl-kernel-")), None
        try:
            sandbox = make_sandbox(scratch, 0, view, Limits(memory_bytes=2 * 2**30), data_dir=data_folder(scratch))
            SandboxKernelManager.sandbox = sandbox
            cells = [new_code_cell(source) for source in (answer, NEXT)]
            for cell, grade_id in zip(cells, ("answer", "after")):
                cell.metadata["nbgrader"] = {"grade_id": grade_id}
            notebook = new_notebook(cells=cells)
            executor = SandboxedExecute(timeout=CELL_SECONDS, interrupt_grace=CELL_SECONDS, max_output_bytes=100_000)
            executor.preprocess(notebook, {"metadata": {"path": str(scratch)}})
            outputs = [[_summary(output) for output in cell.outputs] for cell in notebook.cells]
            kept = sum(len(output.get("text", "")) for output in notebook.cells[0].outputs)
            results[name] = dict(outputs=outputs, events=executor.events, kept=kept)
        finally:
            SandboxKernelManager.sandbox = None
            if sandbox is not None:
                remove_sandbox(sandbox)
            subprocess.run(["rm", "-rf", str(scratch)], check=True)
    return results


def _summary(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return f"{output.name} {output.text.strip().splitlines()[0].strip()}"
    if output.output_type == "error":
        return f"error {output.ename}"
    return output.output_type


@pytest.fixture(scope="module", params=GRADERS)
def kernel_results(request):
    return as_grader(request.param, run_kernel_cases)


@needs_bwrap
@pytest.mark.slow  # eight real kernels per grader (a minute or two): in `make test`, not in `make test-unit`
@pytest.mark.parametrize(
    "name, answer, after, events", [(c[0], *c[3:]) for c in KERNEL_CASES], ids=[c[0] for c in KERNEL_CASES]
)
def test_kernel_in_the_sandbox(kernel_results, name, answer, after, events):
    result = kernel_results[name]
    assert dict(outputs=result["outputs"], events=result["events"]) == dict(outputs=[answer, after], events=events)
    assert result["kept"] <= 100_000 + len(CUT)


# Every scenario the normal grader runs (in one subprocess, see as_grader).
USER_CALLS = [
    (inspect_view, dict(view="notebook", canaries=CANARIES)),
    (inspect_view, dict(view="probe", canaries=CANARIES)),
    (measure_limits, dict(grader_processes=LIMITS.max_processes + 8)),
    (remove_leaves_nothing, {}),
    (grader_death_leaves_nothing, {}),
    (import_with_overlay, {}),
    (without_bwrap, dict(python_readable=True)),
    (run_kernel_cases, {}),
]
