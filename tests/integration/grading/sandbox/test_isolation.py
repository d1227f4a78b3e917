"""What student code in a sandbox can see, write, reach and use, in both views, as the root and as a normal grader.

Every case runs real code in a real bwrap sandbox. Each scenario runs twice: as the "root" grader (in this process:
one unprivileged uid per slot) and as a "user" grader (in a subprocess switched to an unprivileged uid: bwrap's user
namespace is the isolation).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import DATA, FIRST_UID, HOME, make_sandbox, remove_sandbox
from tests.support.sandbox import (
    GRADER_UID,
    GRADERS,
    PACKAGE,
    as_grader,
    data_folder,
    needs_bwrap,
    run_inside,
)

PEFT_DORA = Path(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
PEFT_DORA = PEFT_DORA / "peft" / "tuners" / "lora" / "dora.py"

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
    "the grading code": str(PACKAGE / "grading" / "sandbox" / "__init__.py"),
    "the data folder at /data/sst2": f"{DATA}/train.tsv",
    "the lab package": str(PACKAGE / "config.py"),
    "the probes": str(PACKAGE / "probes"),
    "the seeding function": str(PACKAGE / "seeding.py"),
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
    ("the seeding function", True, True),
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


# Every scenario the normal grader runs (in one subprocess, see tests.support.sandbox.as_grader).
USER_CALLS = [
    (inspect_view, dict(view="notebook", canaries=CANARIES)),
    (inspect_view, dict(view="probe", canaries=CANARIES)),
    (import_with_overlay, {}),
]
