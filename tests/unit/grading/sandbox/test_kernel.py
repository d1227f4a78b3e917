"""SandboxKernelManager: the kernel's command runs in its sandbox and reads a connection file with the paths inside."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox.command import HOME, Limits, Sandbox
from labhelpers.grading.sandbox.kernel import SandboxKernelManager


def _sandbox(workdir, bwrap="/usr/bin/bwrap") -> Sandbox:
    workdir.mkdir(parents=True, exist_ok=True)
    return Sandbox(workdir, "notebook", None, Limits(), {"HOME": HOME}, ("--ro-bind", "/usr", "/usr"), bwrap)


def test_the_kernel_command_is_the_sandboxs_and_its_connection_file_names_paths_inside(tmp_path):
    sandbox = _sandbox(tmp_path / "home")
    manager = SandboxKernelManager(sandbox=sandbox)
    manager.shell_port, manager.iopub_port, manager.stdin_port, manager.hb_port, manager.control_port = 1, 2, 3, 4, 5
    argv = manager.format_kernel_cmd(["--extra"])
    kernel = [sys.executable, "-P", "-m", "ipykernel_launcher", "-f", f"{HOME}/.kernel.json"]
    assert argv == sandbox.command([*kernel, "--IPKernelApp.parent_handle=1", "--extra"])
    connection = json.loads((sandbox.workdir / ".kernel.json").read_text())
    assert (connection["transport"], connection["ip"], connection["shell_port"]) == ("ipc", f"{HOME}/.kernel", 1)


def test_the_kernel_is_always_this_interpreters_ipykernel_interrupted_by_message(tmp_path):
    spec = SandboxKernelManager(sandbox=_sandbox(tmp_path / "home")).kernel_spec
    assert (spec.argv[0], spec.interrupt_mode) == (sys.executable, "message")


def test_a_scratch_folder_too_long_for_sockets_is_refused(tmp_path):
    manager = SandboxKernelManager(sandbox=_sandbox(tmp_path / ("x" * 100) / "home"))
    with pytest.raises(LabGradingError, match="too long a path for the kernel's sockets"):
        asyncio.run(manager._async_pre_start_kernel())


def test_a_kernel_manager_without_a_sandbox_starts_nothing():
    with pytest.raises(RuntimeError, match="SandboxKernelManager has no sandbox"):
        SandboxKernelManager().format_kernel_cmd()
