"""The mounts that build each view: the probe view shows the probes and the seeding function, nothing else of the
lab; the notebook view the whole package and the data; overlays only replace files of the Python environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox import views
from labhelpers.grading.sandbox.command import DATA, HOME, package_folder
from labhelpers.grading.sandbox.views import mount_points, overlay, python_roots, view_mounts

PACKAGE = package_folder()
PEFT_DORA = Path(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
PEFT_DORA = PEFT_DORA / "peft" / "tuners" / "lora" / "dora.py"


def _binds(mounts: list[str]) -> dict[str, tuple[str, str]]:
    """Return {place inside: (bwrap option, what is bound there)} of the binds and tmpfs mounts in `mounts`."""
    found, index = {}, 0
    while index < len(mounts):
        option = mounts[index]
        if option in ("--ro-bind", "--ro-bind-try", "--bind", "--symlink"):
            found[mounts[index + 2]] = (option, mounts[index + 1])
            index += 3
        elif option in ("--tmpfs", "--proc", "--dev", "--remount-ro", "--dir"):
            found.setdefault(mounts[index + 1], (option, ""))
            index += 2
        else:  # --perms MODE
            index += 2
    return found


def _slot(tmp_path: Path) -> tuple[Path, Path]:
    slot_dir, workdir = tmp_path / "probe-0", tmp_path / "probe-0" / "home"
    (slot_dir / "etc").mkdir(parents=True)
    workdir.mkdir()
    (slot_dir / "etc" / "empty").write_bytes(b"")
    return slot_dir, workdir


def test_the_probe_view_sees_the_probes_and_seeding_but_not_the_checks_or_the_rest(tmp_path):
    slot_dir, workdir = _slot(tmp_path)
    binds = _binds(view_mounts("probe", slot_dir, workdir, tmp_path / "sst2", {}))
    of_the_package = {place for place in binds if Path(place) == PACKAGE or PACKAGE in Path(place).parents}
    shown = {place for place in of_the_package if binds[place][0] == "--ro-bind"}
    expected = {str(PACKAGE / "__init__.py"), str(PACKAGE / "seeding.py"), str(PACKAGE / "probes")}
    assert shown == expected
    assert all(binds[place][1] == place for place in shown)
    assert str(PACKAGE / "checks") not in binds and str(PACKAGE) not in shown and DATA not in binds


def test_the_notebook_view_sees_the_whole_package_and_the_data_at_data(tmp_path):
    slot_dir, workdir = _slot(tmp_path)
    (tmp_path / "sst2").mkdir()
    binds = _binds(view_mounts("notebook", slot_dir, workdir, tmp_path / "sst2", {}))
    assert binds[str(PACKAGE)] == ("--ro-bind", str(PACKAGE))
    assert binds[DATA] == ("--ro-bind", str(tmp_path / "sst2"))


def test_the_workdir_is_home_tmp_and_dev_shm_and_the_root_is_read_only(tmp_path):
    slot_dir, workdir = _slot(tmp_path)
    mounts = view_mounts("probe", slot_dir, workdir, None, {})
    binds = _binds(mounts)
    assert [binds[place] for place in (HOME, "/tmp", "/dev/shm")] == [("--bind", str(workdir))] * 3
    assert binds["/etc/passwd"] == ("--ro-bind", str(slot_dir / "etc" / "passwd"))
    assert all(binds[str(root)][0] == "--ro-bind" for root in python_roots())
    assert mounts[-4:] == ["--remount-ro", "/dev", "--remount-ro", "/"]


@pytest.mark.parametrize("missing", ["seeding.py", "probes"])
def test_the_probe_view_needs_each_of_its_parts(monkeypatch, tmp_path, missing):
    package = tmp_path / "labhelpers"
    (package / "probes").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "seeding.py").write_text("")
    (package / missing).rename(tmp_path / "moved")
    monkeypatch.setattr(views, "package_folder", lambda: package)
    slot_dir, workdir = _slot(tmp_path)
    needed = "probes/" if missing == "probes" else missing
    with pytest.raises(LabGradingError, match=f"does not exist: the probe view needs labhelpers/{needed}"):
        view_mounts("probe", slot_dir, workdir, None, {})


def test_an_overlay_shows_its_source_and_hides_compiled_copies(tmp_path):
    stub, empty = tmp_path / "stub.py", tmp_path / "empty"
    stub.write_text("")
    binds = overlay(PEFT_DORA, stub, empty)
    assert binds[0] == ("--ro-bind", str(stub), str(PEFT_DORA))
    compiled = sorted((PEFT_DORA.parent / "__pycache__").glob("dora.*.pyc"))
    assert binds[1:] == [("--ro-bind", str(empty), str(path)) for path in compiled]


@pytest.mark.parametrize(
    "target, source, message",
    [
        (PACKAGE / "checks" / "core.py", "stub.py", "not an existing file of the Python environment"),
        (PEFT_DORA, "missing.py", "is not a file: give the file to show at"),
    ],
    ids=["a target outside the environment", "a source that is no file"],
)
def test_an_overlay_is_refused(tmp_path, target, source, message):
    (tmp_path / "stub.py").write_text("")
    with pytest.raises(LabGradingError, match=message):
        overlay(target, tmp_path / source, tmp_path / "empty")


def test_mount_points_open_the_folders_leading_to_the_targets():
    targets = [Path("/home/student"), Path("/data/sst2"), Path("/data/sst2/inner")]
    assert mount_points(targets) == ["--perms", "0755", "--dir", "/home", "--perms", "0755", "--dir", "/data"]
