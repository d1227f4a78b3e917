"""A Jupyter kernel inside a sandbox: SandboxKernelManager, given its Sandbox when it is made."""

from __future__ import annotations

import os
import sys

from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Instance

from labhelpers.errors import LabGradingError
from labhelpers.grading.sandbox.command import Sandbox


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs inside its `sandbox` (``SandboxKernelManager(sandbox=...)``).

    The kernel has no network, so it talks to the grader over ZeroMQ's ipc transport: socket files in the workdir,
    named in a connection file written there with the paths the kernel sees. bwrap does not forward signals, so
    interrupts travel as messages (ipykernel's control-channel ``interrupt_request``); killing the kernel kills
    bwrap, which ends the sandbox's whole pid namespace.
    """

    sandbox = Instance(Sandbox, allow_none=True, help="The sandbox the kernel runs in (one per kernel manager).")

    SOCKETS = ".kernel"
    """Prefix of the kernel's socket files in the workdir."""

    @property
    def kernel_spec(self) -> KernelSpec:
        # Always this interpreter's ipykernel, whatever kernelspec the submission names or the grader has installed.
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-P", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (sandboxed)",
                language="python",
                interrupt_mode="message",
            )
        return self._kernel_spec

    def _sandbox(self) -> Sandbox:
        if self.sandbox is None:
            raise RuntimeError(
                "SandboxKernelManager has no sandbox: make it with SandboxKernelManager(sandbox=...) "
                "(SandboxedExecute gives it the sandbox of its configured NotebookExecution)"
            )
        return self.sandbox

    async def _async_pre_start_kernel(self, **kw):
        sandbox = self._sandbox()
        sockets = sandbox.workdir / self.SOCKETS
        # A Unix socket path holds at most 107 bytes (sun_path); the grader connects through the host path.
        if len(f"{sockets}-99".encode()) > 107:
            raise LabGradingError(
                f"the scratch folder {sandbox.workdir} is too long a path for the kernel's sockets "
                "(107 bytes at most): use a shorter scratch root, e.g. under /tmp."
            )
        self.transport = "ipc"
        self.ip = str(sockets)
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        sandbox = self._sandbox()
        # The kernel's own copy of the connection file: the socket paths as it sees them, readable by its uid.
        connection = sandbox.workdir / f"{self.SOCKETS}.json"
        write_connection_file(
            str(connection),
            ip=sandbox.inside(sandbox.workdir / self.SOCKETS),
            key=self.session.key,
            transport="ipc",
            shell_port=self.shell_port,
            iopub_port=self.iopub_port,
            stdin_port=self.stdin_port,
            hb_port=self.hb_port,
            control_port=self.control_port,
            signature_scheme=self.session.signature_scheme,
            kernel_name=self.kernel_name,
        )
        if sandbox.uid is not None:
            os.chown(connection, sandbox.uid, sandbox.uid)
        # The kernel's parent is bwrap's pid 1: nothing for ipykernel to poll, and no console banner to print.
        kernel = [sys.executable, "-P", "-m", "ipykernel_launcher", "-f", sandbox.inside(connection)]
        return sandbox.command([*kernel, "--IPKernelApp.parent_handle=1", *(extra_arguments or [])])
