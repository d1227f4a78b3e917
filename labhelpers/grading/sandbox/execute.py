"""nbgrader's Execute preprocessor, sandboxed: kernels in the sandbox, output caps, a dead kernel fails only what is left.

One notebook's execution is a NotebookExecution record: `configure_execution` puts it in nbgrader's configuration,
SandboxedExecute's kernel manager runs in its sandbox, and its events (time-outs, truncated output, a stopped
kernel) collect in it for the grader to read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Instance, Integer
from traitlets.config import Config

from labhelpers.grading.sandbox.command import Sandbox
from labhelpers.grading.sandbox.kernel import SandboxKernelManager

KERNEL_STOPPED = "KernelStopped"
NOT_RUN = "NotRun"
OUTPUT_TRUNCATED = "[output truncated by the grader]"


MEMORY_HELD = 0.75
"""Share of the memory cap a kernel may still hold after an allocation failure and be allowed to go on."""


def _memory_error(cell: NotebookNode) -> bool:
    """True when the cell failed to allocate memory (Python's MemoryError or PyTorch's allocator error)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            text = f"{output.get('ename', '')}: {output.get('evalue', '')}"
            if (
                output.get("ename") == "MemoryError"
                or "can't allocate memory" in text
                or "DefaultCPUAllocator" in text
            ):
                return True
    return False


def _largest_address_space(pid: int | None) -> int | None:
    """Return the largest virtual memory size (bytes) of process `pid` and its descendants, None if unreadable.

    The kernel manager's process is bwrap; the kernel runs a few processes below it (bwrap's pid 1, then Python).
    """
    if pid is None:
        return None
    parents, sizes = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/status") as status:
                for line in status:
                    if line.startswith("PPid:"):
                        parents[int(entry.name)] = int(line.split()[1])
                    elif line.startswith("VmSize:"):
                        sizes[int(entry.name)] = int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    tree, grew = {pid}, True
    while grew:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    found = [sizes[member] for member in tree if member in sizes]
    return max(found) if found else None


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


@dataclass(eq=False)
class NotebookExecution:
    """One notebook's execution: the sandbox its kernel runs in, and what went wrong (filled as it runs).

    Attributes:
        sandbox: the notebook view's sandbox.
        events: time-outs, truncated output, a stopped kernel, the memory cap, in the order they happened.
    """

    sandbox: Sandbox
    events: list[str] = field(default_factory=list)

    def __deepcopy__(self, memo: dict) -> NotebookExecution:
        # traitlets deep-copies each configured value into the preprocessor it configures: the events must reach
        # this record, the one the grader reads.
        return self


def configure_execution(config: Config, sandbox: Sandbox) -> NotebookExecution:
    """Make nbgrader's autograde under `config` run the next notebook's kernel in `sandbox`.

    Args:
        config: the course's nbgrader configuration (autograde runs SandboxedExecute).
        sandbox: a fresh notebook-view sandbox.

    Returns:
        The execution's record: its `events` fill as autograde runs the notebook.
    """
    execution = NotebookExecution(sandbox)
    config.SandboxedExecute.execution = execution
    return execution


class SandboxedExecute(Execute):
    """Execute a submission in SandboxKernelManager's kernel, surviving floods, hangs and crashes.

    * Output beyond `max_output_bytes` per cell is dropped (one note says so), so a print loop cannot fill the
      grader's memory; nbgrader's LimitOutput then trims what is kept.
    * A time-out interrupts the cell (nbgrader's behaviour) and later cells run; a cell that does not stop within
      `interrupt_grace` seconds of the interrupt, or `max_timeouts` time-outs in all, get the kernel killed, since
      a kernel that ignores interrupts would otherwise make every later cell wait for its own time-out.
    * When the kernel dies (sys.exit in a thread, os._exit, a crash, the memory cap), the cell gets a
      KernelStopped error and every later code cell a NotRun error, so their tests score 0 (a test cell
      with no error output would otherwise score full points) while earlier results stand.
    """

    max_output_bytes = Integer(1_000_000, help="Most bytes of output kept per cell (figures included).").tag(
        config=True
    )
    max_timeouts = Integer(2, help="Cell time-outs after which the kernel is killed.").tag(config=True)
    interrupt_grace = Integer(
        10, help="Seconds a timed-out cell has to stop after the interrupt before the kernel is killed."
    ).tag(config=True)

    execution = Instance(
        NotebookExecution, allow_none=True, help="The sandbox of this notebook's kernel, and the record of its events."
    ).tag(config=True)

    def __init__(self, **kwargs):
        # nbgrader's Execute passes its own kernel_manager_class as an argument, which outranks configuration.
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(**kwargs)
        self._stopped: str | None = None
        self._timeouts = 0
        self._bytes: dict[int, int] = {}
        self.events: list[str] = self.execution.events if self.execution is not None else []

    def create_kernel_manager(self) -> SandboxKernelManager:
        """Return a new kernel manager (nbclient's factory) whose kernel runs in the execution's sandbox."""
        if self.execution is None:
            raise RuntimeError(
                "SandboxedExecute has no sandbox: configure_execution(config, sandbox) gives it one before autograding"
            )
        km = super().create_kernel_manager()
        km.sandbox = self.execution.sandbox
        return km

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._bytes.get(cell_index, 0)
        self._bytes[cell_index] = used + size
        if used + size <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.max_output_bytes:
            room = self.max_output_bytes - used
            if msg.get("msg_type") == "stream" and room > 0:
                # A print loop's output arrives in few large messages: keep the start of the one that overflows.
                content = msg["content"]
                super().output(
                    outs, {**msg, "content": {**content, "text": content["text"][:room]}}, display_id, cell_index
                )
            outs.append(
                new_output(
                    "stream", name="stderr", text=f"\n{OUTPUT_TRUNCATED}: more than {self.max_output_bytes} bytes\n"
                )
            )
            self.events.append(f"output truncated in cell {self._cell_label(self.nb.cells[cell_index])}")
        return None

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timeouts += 1
        self.events.append(f"time-out ({timeout} s) in cell {self._cell_label(cell)}")
        if self._timeouts >= self.max_timeouts:
            await ensure_async(self.km.shutdown_kernel(now=True))
            raise DeadKernelError(f"the kernel was stopped after {self._timeouts} cell time-outs of {timeout} s")
        reply = await super()._async_handle_timeout(timeout, cell)  # interrupts the kernel
        if not await self._interrupted_cell_ends():
            # The code ignores the interrupt (e.g. it catches SIGINT): the next cell would only queue behind it.
            await ensure_async(self.km.shutdown_kernel(now=True))
            raise DeadKernelError(
                f"the kernel was stopped: the cell ignored the interrupt after its time-out of {timeout} s"
            )
        return reply

    async def _interrupted_cell_ends(self) -> bool:
        """Wait up to `interrupt_grace` seconds for the interrupted cell's reply; False when none comes."""
        from queue import Empty

        try:
            await ensure_async(self.kc.shell_channel.get_msg(timeout=self.interrupt_grace))
        except Empty:
            return False
        return True

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if self._stopped:
            cell.outputs = [_error(NOT_RUN, f"not run: {self._stopped}")]
            return cell
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            if _memory_error(cell):
                await self._after_memory_error(cell)
            return cell
        except DeadKernelError as error:
            reason = str(error) if "time-out" in str(error) else self._death_reason()
            self._stopped = f"{reason} in cell {self._cell_label(cell)}"
            self.events.append(self._stopped)
            cell.outputs.append(_error(KERNEL_STOPPED, self._stopped))
            return cell
        except CellTimeoutError as error:
            # The reply came but its output did not (IOPub): the cell counts as failed, the kernel goes on.
            self.events.append(f"no output before the time-out in cell {self._cell_label(cell)}")
            cell.outputs.append(_error("CellTimeoutError", str(error).splitlines()[0]))
            return cell

    async def _after_memory_error(self, cell) -> None:
        """Stop a kernel that still holds most of its memory cap (later cells would fail at random); else go on."""
        sandbox = getattr(self.km, "sandbox", None)
        cap = sandbox.limits.memory_bytes if sandbox is not None else None
        used = _largest_address_space(self._kernel_pid())
        if cap and used is not None and used >= MEMORY_HELD * cap:
            self._stopped = f"the memory cap ({cap / 2**30:g} GiB) was reached and still held in cell {self._cell_label(cell)}: kernel stopped"
            self.events.append(self._stopped)
            await ensure_async(self.km.shutdown_kernel(now=True))
        else:
            self.events.append(f"the memory cap was reached in cell {self._cell_label(cell)}")

    def _kernel_pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    # NotebookClient binds the synchronous wrapper to its own coroutine: rebind it to ours.
    execute_cell = run_sync(async_execute_cell)

    def _death_reason(self) -> str:
        """Say how the kernel died: its exit code (os._exit, sys.exit in a thread) or the signal that killed it."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "the kernel stopped"
        if code < 0:
            return f"the kernel was killed by signal {-code}"
        if code > 128:
            # bwrap reports a command killed by signal N as exit code 128 + N.
            return f"the kernel was killed by signal {code - 128}"
        return f"the kernel exited with code {code}"

    @staticmethod
    def _cell_label(cell) -> str:
        if cell is None:
            return "?"
        return cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{cell.get('execution_count') or '?'}"
