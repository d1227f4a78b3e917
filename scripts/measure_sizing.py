"""Measure what one student and one submission cost, for sizing a JupyterHub (docs/deploying.md).

    LAB_DATA_DIR=../shared/data/sst2 .venv/bin/python scripts/measure_sizing.py [--sizes fast full] [--grade 2]

For each notebook size (`fast`: LAB_FAST=1, `full`: the default student size) it runs the solutions notebook — a
complete student's work — cell by cell in a fresh ipykernel (nbclient) and reads, just before the kernel stops, its
peak resident memory (VmHWM in /proc, and the largest polled total of the kernel and its children) and its CPU
seconds (user + system, children included). Then it grades a class of `--grade` complete submissions with
`dora-lab grade` one at a time and reports the time per submission. Prints each figure as soon as it is measured
and keeps --out (JSON) current. On a busy machine both wall and CPU times grow (PyTorch's threads spin while they
wait for a core): the load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import psutil

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.config import get_config
from labhelpers.grading.course import release
from labhelpers.grading.samples import perfect, write_submission

MIB = 2**20


@dataclass
class KernelRun:
    """One notebook run in a fresh kernel.

    Attributes:
        size: "fast" (LAB_FAST=1) or "full".
        wall_s: seconds from the first cell to the last.
        cpu_s: the kernel's user + system CPU seconds, its children included.
        peak_rss_mib: the kernel's peak resident memory (the larger of VmHWM and the polled tree total).
        cells: code cells run.
    """

    size: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    cells: int


@dataclass
class GradingRun:
    """One `dora-lab grade` run, one submission at a time.

    Attributes:
        submissions: complete submissions graded.
        wall_s: seconds for the whole run (course set-up included).
        per_submission_s: the grader's own seconds per submission (autograde, re-check, feedback), mean.
        cpu_s: CPU seconds of the grading processes and their children, all submissions.
    """

    submissions: int
    wall_s: float
    per_submission_s: float
    cpu_s: float


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def _peak_hwm(pid: int) -> int:
    """Return VmHWM of `pid` in bytes (the kernel's own peak resident set size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_notebook(size: str, notebook_path: Path, workdir: Path) -> KernelRun:
    """Run `notebook_path` in a fresh kernel with LAB_FAST set for `size`; measure its memory and CPU time."""
    from nbclient import NotebookClient

    os.environ["LAB_FAST"] = "1" if size == "fast" else "0"
    os.environ["LAB_OUTPUT_DIR"] = str(workdir / f"outputs-{size}")
    notebook = nbformat.read(notebook_path, as_version=4)
    # No time limit per cell: on a busy machine the full-size training cell runs for over an hour.
    client = NotebookClient(notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": workdir}})
    peak, stop = [0], threading.Event()
    with client.setup_kernel():
        kernel = psutil.Process(client.km.provisioner.process.pid)

        def poll() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], _tree_rss(kernel))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        started, cells = time.perf_counter(), 0
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
                cells += 1
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        times = kernel.cpu_times()
        cpu = times.user + times.system + times.children_user + times.children_system
        peak_bytes = max(peak[0], _peak_hwm(kernel.pid))
    return KernelRun(
        size=size, wall_s=round(wall, 1), cpu_s=round(cpu, 1), peak_rss_mib=round(peak_bytes / MIB), cells=cells
    )


def grade_class(submissions: int, workdir: Path) -> GradingRun:
    """Grade `submissions` complete notebooks with `dora-lab grade` (one at a time); time it."""
    import subprocess

    course = workdir / "course"
    (course / "solutions" / "dora").mkdir(parents=True)
    (course / "solutions" / "dora" / "dora_lab.ipynb").write_bytes(SOURCE_NOTEBOOK.read_bytes())
    student = nbformat.read(release(course), as_version=4)
    complete = perfect(student, nbformat.read(SOURCE_NOTEBOOK, as_version=4))
    for index in range(submissions):
        write_submission(workdir / "submissions", f"student{index:02d}", complete)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "labhelpers", "grade", str(workdir / "submissions")]
    subprocess.run([*command, "--out", str(workdir / "graded"), "--jobs", "1", "--quiet"], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    statuses = json.loads((workdir / "graded" / "status.json").read_text())
    seconds = [entry.get("seconds", 0.0) for entry in statuses.values()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return GradingRun(
        submissions=submissions,
        wall_s=round(wall, 1),
        per_submission_s=round(sum(seconds) / len(seconds), 1),
        cpu_s=round(cpu, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["fast", "full"], choices=["fast", "full"])
    parser.add_argument("--grade", type=int, default=2, metavar="N", help="complete submissions to grade (0: none)")
    parser.add_argument("--out", type=Path, default=Path("outputs/sizing.json"))
    options = parser.parse_args()
    if get_config().data_dir is None:
        sys.exit("set LAB_DATA_DIR to the SST-2 folder (e.g. ../shared/data/sst2): the notebook reads it")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    record = {"cores": os.cpu_count(), "load_average": [os.getloadavg()[0]], "kernels": [], "grading": None}

    def save(line: str) -> None:
        """Print one result as soon as it is measured and keep the JSON current (a long run may be stopped)."""
        record["load_average"].append(os.getloadavg()[0])
        options.out.write_text(json.dumps(record, indent=1))
        print(f"{line} (1-minute load average now {record['load_average'][-1]:.1f})", flush=True)

    options.out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; torch threads = cores", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in options.sizes:
            run = run_notebook(size, SOURCE_NOTEBOOK, Path(tmp))
            record["kernels"].append(asdict(run))
            save(
                f"notebook {run.size} ({run.cells} code cells): {run.wall_s} s wall, {run.cpu_s} CPU s, "
                f"peak RSS {run.peak_rss_mib} MiB"
            )
        if options.grade:
            grading = grade_class(options.grade, Path(tmp) / "grading")
            record["grading"] = asdict(grading)
            save(
                f"grading, one at a time: {grading.submissions} complete submissions in {grading.wall_s} s "
                f"({grading.per_submission_s} s each by the grader's clock; "
                f"{grading.cpu_s / grading.submissions:.1f} CPU s each)"
            )
    print(
        "load averages at start and after each step: "
        + ", ".join(f"{load:.1f}" for load in record["load_average"])
        + " (above the core count, other work competed: wall and CPU times are inflated)"
    )
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
