"""Kernels in the sandbox: nbgrader's Execute (SandboxedExecute) with SandboxKernelManager, configured as the grading
worker configures it, surviving time-outs, ignored interrupts, exits, output floods and the memory cap."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from labhelpers.grading.sandbox import DATA, HOME, Limits, make_sandbox, remove_sandbox
from tests.support.sandbox import GRADERS, as_grader, data_folder, needs_bwrap

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
    from labhelpers.grading.sandbox import SandboxedExecute, configure_execution

    results = {}
    for name, view, answer, *_ in KERNEL_CASES:
        scratch, sandbox = Path(tempfile.mkdtemp(prefix="dl-kernel-")), None
        try:
            sandbox = make_sandbox(scratch, 0, view, Limits(memory_bytes=2 * 2**30), data_dir=data_folder(scratch))
            # As the grading worker does: the sandbox travels in nbgrader's configuration, the events come back in
            # the execution's record.
            config = Config()
            execution = configure_execution(config, sandbox)
            cells = [new_code_cell(source) for source in (answer, NEXT)]
            for cell, grade_id in zip(cells, ("answer", "after")):
                cell.metadata["nbgrader"] = {"grade_id": grade_id}
            notebook = new_notebook(cells=cells)
            executor = SandboxedExecute(
                config=config, timeout=CELL_SECONDS, interrupt_grace=CELL_SECONDS, max_output_bytes=100_000
            )
            executor.preprocess(notebook, {"metadata": {"path": str(scratch)}})
            outputs = [[_summary(output) for output in cell.outputs] for cell in notebook.cells]
            kept = sum(len(output.get("text", "")) for output in notebook.cells[0].outputs)
            results[name] = dict(outputs=outputs, events=execution.events, kept=kept)
        finally:
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


# Every scenario the normal grader runs (in one subprocess, see tests.support.sandbox.as_grader).
USER_CALLS = [
    (run_kernel_cases, {}),
]
