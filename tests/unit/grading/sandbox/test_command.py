"""The argv that runs a command in a sandbox, for each kind of grader and machine, and the environment inside."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labhelpers.grading.sandbox import command
from labhelpers.grading.sandbox.capability import ISOLATION, tool
from labhelpers.grading.sandbox.command import HOME, LIBRARY_WARNINGS, Limits, Sandbox, environment, package_folder

LIMITS = Limits(memory_bytes=2**30, max_processes=32, max_file_bytes=2**20, threads=3)
BWRAP = "/usr/bin/bwrap"
MOUNTS = ("--ro-bind", "/usr", "/usr")
ARGV = ["python", "-c", "pass"]


def _prlimit() -> list[str]:
    return [tool("prlimit"), "--as=1073741824", "--fsize=1048576", "--core=0", "--nproc=32", "--"]


def _drop(uid: int) -> list[str]:
    """setpriv's arguments that drop root for `uid` for good (no groups, no capabilities, no_new_privs)."""
    privileges = ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *privileges]


def _in_bwrap(user: list[str], inner: list[str]) -> list[str]:
    """The bwrap argv around `inner`: empty environment outside, namespaces, the view, the sandbox's variables."""
    head = [tool("env"), "-i", BWRAP, *ISOLATION, *user, *MOUNTS, "--chdir", HOME]
    return [*head, "--clearenv", "--setenv", "A", "1", "--setenv", "B", "two words", "--", *inner]


def _without_bwrap(setpriv: list[str], workdir: Path) -> list[str]:
    """The argv without bwrap: setpriv (parent-death signal first), the limits, env -i in the workdir."""
    prefix = [setpriv[0], "--pdeathsig=KILL", *setpriv[1:], *_prlimit()]
    return [*prefix, tool("env"), "-i", "-C", str(workdir), "A=1", "B=two words", *ARGV]


# (name, uid, bwrap, users may create user namespaces here, expected argv for a workdir)
COMMANDS = [
    (
        "a normal grader: bwrap's user namespace, nested namespaces refused",
        None,
        BWRAP,
        True,
        lambda workdir: _in_bwrap(["--unshare-user", "--disable-userns"], [*_prlimit(), *ARGV]),
    ),
    (
        "root: the slot's uid, and a second bwrap refusing it user namespaces",
        200_001,
        BWRAP,
        True,
        lambda workdir: _in_bwrap(
            [],
            [*_drop(200_001), BWRAP, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
            + [*_prlimit(), *ARGV],
        ),
    ),
    (
        "root where users may not create user namespaces: no second bwrap",
        200_001,
        BWRAP,
        False,
        lambda workdir: _in_bwrap([], [*_drop(200_001), *_prlimit(), *ARGV]),
    ),
    (
        "root without bwrap: the slot's uid and the limits only",
        200_001,
        None,
        True,
        lambda workdir: _without_bwrap(_drop(200_001), workdir),
    ),
    (
        "a normal grader without bwrap: the limits only",
        None,
        None,
        True,
        lambda workdir: _without_bwrap([tool("setpriv"), "--"], workdir),
    ),
]


@pytest.mark.parametrize("name, uid, bwrap, may_unshare, expected", COMMANDS, ids=[case[0] for case in COMMANDS])
def test_command_line(monkeypatch, tmp_path, name, uid, bwrap, may_unshare, expected):
    monkeypatch.setattr(command, "users_may_unshare", lambda: may_unshare)
    workdir = tmp_path / "home"
    sandbox = Sandbox(workdir, "notebook", uid, LIMITS, {"A": "1", "B": "two words"}, MOUNTS if bwrap else (), bwrap)
    assert sandbox.command(ARGV) == expected(workdir)


@pytest.mark.parametrize("bwrap", [BWRAP, None], ids=["with bwrap", "without bwrap"])
def test_paths_inside_are_under_home_with_bwrap_and_the_workdir_without(tmp_path, bwrap):
    workdir = tmp_path / "home"
    sandbox = Sandbox(workdir, "notebook", None, LIMITS, {}, (), bwrap)
    expected_home = HOME if bwrap else str(workdir)
    assert sandbox.home == expected_home
    assert sandbox.inside(workdir / ".kernel.json") == f"{expected_home}/.kernel.json"


def test_environment_holds_the_lab_settings_and_caches_in_the_workdir():
    env = environment(HOME, "notebook", "/data/sst2", LIMITS)
    assert env == dict(
        PATH=f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        LANG="C.UTF-8",
        TZ="UTC",
        HOME=HOME,
        USER="student",
        LOGNAME="student",
        TMPDIR=HOME,
        LAB_FAST="1",
        LAB_FIGURES="0",
        LAB_OUTPUT_DIR=f"{HOME}/outputs",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=f"{HOME}/.cache/huggingface",
        MPLBACKEND="Agg",
        MPLCONFIGDIR=f"{HOME}/.config/matplotlib",
        JUPYTER_RUNTIME_DIR=f"{HOME}/.local/runtime",
        IPYTHONDIR=f"{HOME}/.ipython",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYTHONWARNINGS=LIBRARY_WARNINGS,
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="3",
        MKL_NUM_THREADS="3",
        OPENBLAS_NUM_THREADS="3",
        LAB_DATA_DIR="/data/sst2",
        PYTHONPATH=str(package_folder().parent),
    )


@pytest.mark.parametrize("view, data", [("probe", "/data/sst2"), ("notebook", None)])
def test_environment_names_the_data_only_in_the_notebook_view_with_data(view, data):
    assert "LAB_DATA_DIR" not in environment(HOME, view, data, LIMITS)
