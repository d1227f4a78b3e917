"""The sandbox records (Limits, Sandbox), the argv that runs a command inside one, and the environment it sees."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import labhelpers
from labhelpers.grading.sandbox.capability import ISOLATION, tool, users_may_unshare

VIEWS = ("notebook", "probe")
"""What a sandbox sees of the lab: the whole package and SST-2 (a notebook), or only the probes (a probe)."""
HOME = "/home/student"
"""Where the scratch folder appears inside: cwd, HOME, TMPDIR, also bound at /tmp and /dev/shm."""
DATA = "/data/sst2"
"""Where the SST-2 folder appears inside the notebook view (LAB_DATA_DIR)."""
MAX_SLOTS = 32
"""Most submissions one grading run sandboxes at once (--jobs); each slot has a notebook and a probe sandbox."""
LIBRARY_WARNINGS = "ignore::DeprecationWarning,ignore::FutureWarning"
"""PYTHONWARNINGS of graded code: nbgrader fails a test cell that writes to stderr, and the pinned libraries'
deprecation notices must not cost points."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of every process in a sandbox.

    Attributes:
        memory_bytes: address-space cap of each process (RLIMIT_AS): an allocation beyond it fails (MemoryError).
        max_processes: processes and threads of the sandbox (RLIMIT_NPROC): stops fork bombs.
        max_file_bytes: largest file the code may write (RLIMIT_FSIZE).
        threads: OMP/MKL/torch threads, so that parallel sandboxes share the cores instead of fighting over them.
    """

    memory_bytes: int = 6 * 2**30
    max_processes: int = 512
    max_file_bytes: int = 256 * 2**20
    threads: int = 1


@dataclass(frozen=True)
class Sandbox:
    """Where and how one piece of student code runs.

    Attributes:
        workdir: the fresh scratch folder, the only writable place (HOME inside; also /tmp and /dev/shm).
        view: "notebook" or "probe" (see `make_sandbox`).
        uid: the slot's unprivileged uid when the grader is root; None for a normal grader (bwrap's user namespace).
        limits: the resource limits.
        env: the whole environment inside (nothing of the grader's).
        mounts: bwrap's arguments that build the view (empty when bwrap is unavailable).
        bwrap: the bwrap program, or None (`--no-sandbox`): then code runs with the limits only.
    """

    workdir: Path
    view: str
    uid: int | None
    limits: Limits
    env: Mapping[str, str]
    mounts: tuple[str, ...] = ()
    bwrap: str | None = None

    @property
    def home(self) -> str:
        """The workdir's path as the sandboxed code sees it."""
        return HOME if self.bwrap else str(self.workdir)

    def inside(self, path: Path) -> str:
        """Return the path inside the sandbox of `path`, a file in the workdir."""
        return str(Path(self.home) / Path(path).relative_to(self.workdir))

    def command(self, argv: list[str]) -> list[str]:
        """Return the argv that runs `argv` inside the sandbox (for subprocess.run or a kernel launcher)."""
        limits = [
            tool("prlimit"),
            f"--as={self.limits.memory_bytes}",
            f"--fsize={self.limits.max_file_bytes}",
            "--core=0",
            f"--nproc={self.limits.max_processes}",
            "--",
        ]
        # setpriv drops root for the slot's uid: no groups, no capabilities, none to regain (no_new_privs).
        drop = (
            [tool("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
            + ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            if self.uid is not None
            else []
        )
        if not self.bwrap:
            environment = ["-C", str(self.workdir), *(f"{name}={value}" for name, value in self.env.items())]
            # The parent-death signal stands in for bwrap's --die-with-parent (the code's own children may outlive).
            drop = drop or [tool("setpriv"), "--"]
            return [drop[0], "--pdeathsig=KILL", *drop[1:], *limits, tool("env"), "-i", *environment, *argv]
        # As a normal user bwrap's user namespace is the isolation; nested namespaces are refused.
        user = ["--unshare-user", "--disable-userns"] if self.uid is None else []
        if self.uid is not None and users_may_unshare():
            # The slot's uid could make a user namespace of its own and mount a tmpfs there, memory RLIMIT_AS does
            # not count; a second, unprivileged bwrap refuses them (--disable-userns needs a user namespace).
            drop += [self.bwrap, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
        environment = ["--clearenv"] + [word for name, value in self.env.items() for word in ("--setenv", name, value)]
        # `env -i`: bwrap's own process (pid 1 inside) keeps an empty environment; as the same user the code
        # could read it in /proc/1/environ, and the grader's variables (tokens, paths) must not be there.
        # prlimit runs inside: in bwrap's user namespace RLIMIT_NPROC then counts this sandbox's processes only
        # (set outside, it would count all the grader's processes).
        return [
            tool("env"),
            "-i",
            self.bwrap,
            *ISOLATION,
            *user,
            *self.mounts,
            "--chdir",
            HOME,
            *environment,
            "--",
            *drop,
            *limits,
            *argv,
        ]


def package_folder() -> Path:
    """Return the folder of the lab package (the editable install's `labhelpers/`)."""
    return Path(labhelpers.__file__).resolve().parent


def environment(home: str, view: str, data: str | None, limits: Limits) -> dict[str, str]:
    """Return the environment of sandboxed code: grading settings, caches in the scratch folder, nothing else.

    Args:
        home: the workdir as the code sees it (HOME, TMPDIR, the caches).
        view: "notebook" or "probe".
        data: the SST-2 folder as the code sees it (LAB_DATA_DIR, notebook view only), or None.
        limits: the resource limits (their thread count).
    """
    threads = str(limits.threads)
    env = dict(
        PATH=f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        LANG="C.UTF-8",
        TZ="UTC",
        HOME=home,
        USER="student",
        LOGNAME="student",
        TMPDIR=home,
        LAB_FAST="1",
        # Nobody looks at the figures of a graded run (they would not reach the feedback: the backend is Agg).
        LAB_FIGURES="0",
        LAB_OUTPUT_DIR=f"{home}/outputs",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=f"{home}/.cache/huggingface",
        MPLBACKEND="Agg",
        MPLCONFIGDIR=f"{home}/.config/matplotlib",
        JUPYTER_RUNTIME_DIR=f"{home}/.local/runtime",
        IPYTHONDIR=f"{home}/.ipython",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        # nbgrader scores a test cell 0 when it writes to stderr: a library's deprecation notice must not cost points.
        PYTHONWARNINGS=LIBRARY_WARNINGS,
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
    )
    if view == "notebook" and data is not None:
        env["LAB_DATA_DIR"] = data
    # The sandbox imports the lab from where the grader does (also when that is not the editable install's folder).
    env["PYTHONPATH"] = str(package_folder().parent)
    return env
