"""Run untrusted student code in a bubblewrap sandbox that sees only what the notebook needs.

bubblewrap (``bwrap``) builds each sandbox from an empty root and binds into it, read-only, the system (``/usr``),
the Python install, the venv, the lab package and (notebook view) the SST-2 folder; the sandbox's own scratch
folder is the only writable place. Nothing else of the machine exists inside: no home folders, no other copy of the
solutions, no classmates' submissions, no network. ``Sandbox.command(argv)`` is a plain argv (``env -i bwrap ...
-- [setpriv ... -- bwrap --disable-userns ...] prlimit ... -- argv``), so ``subprocess.run`` and jupyter_client's
kernel launcher start it alike.

As root, each concurrent slot also runs as its own unprivileged uid (processes counted and killed per uid); as a
normal user, bwrap's user namespace is the isolation. Where bwrap cannot isolate, `make_sandbox` refuses with the
diagnosed case and its fix (`require_isolation`); only `isolate=False` (`dora-lab grade --no-sandbox`) runs code
without it, with the resource limits only.

One module per concern:

* ``capability``: what this machine gives the sandboxes (system tools, root or not, the namespaces unshared);
* ``diagnosis``: whether bwrap isolates here and, if not, which case it is (`isolation()`, `require_isolation()`);
* ``remedies``: the fix for each case, what grading without bwrap loses, a --no-sandbox grade's notes;
* ``command``: the Sandbox and Limits records, the argv that runs a command inside, the environment;
* ``views``: the mounts that build a view (the notebook's, or the probes' with only labhelpers/probes/);
* ``uids``: the machine-wide registry of the uid ranges that grading runs hold (root grader);
* ``processes``: finding a sandbox's processes in /proc, killing them, removing its folder;
* ``slots``: `make_sandbox` and `remove_sandbox`, one slot's scratch folder at a time;
* ``kernel``: SandboxKernelManager, a Jupyter kernel inside a sandbox;
* ``execute``: SandboxedExecute, nbgrader's Execute preprocessor with that kernel, output caps and crash handling.

Names load on first use: `make_sandbox` does not import nbgrader, SandboxedExecute does.
"""

from importlib import import_module

_NAMES = {
    "DATA": "labhelpers.grading.sandbox.command",
    "HOME": "labhelpers.grading.sandbox.command",
    "LIBRARY_WARNINGS": "labhelpers.grading.sandbox.command",
    "MAX_SLOTS": "labhelpers.grading.sandbox.command",
    "VIEWS": "labhelpers.grading.sandbox.command",
    "Limits": "labhelpers.grading.sandbox.command",
    "Sandbox": "labhelpers.grading.sandbox.command",
    "NO_SANDBOX": "labhelpers.grading.sandbox.remedies",
    "UNSANDBOXED_NOTICE": "labhelpers.grading.sandbox.remedies",
    "SandboxUnavailable": "labhelpers.grading.sandbox.diagnosis",
    "isolation": "labhelpers.grading.sandbox.diagnosis",
    "problem": "labhelpers.grading.sandbox.diagnosis",
    "require_isolation": "labhelpers.grading.sandbox.diagnosis",
    "unsandboxed_status": "labhelpers.grading.sandbox.remedies",
    "FIRST_UID": "labhelpers.grading.sandbox.uids",
    "UIDS_PER_RUN": "labhelpers.grading.sandbox.uids",
    "make_sandbox": "labhelpers.grading.sandbox.slots",
    "remove_sandbox": "labhelpers.grading.sandbox.slots",
    "SandboxKernelManager": "labhelpers.grading.sandbox.kernel",
    "NotebookExecution": "labhelpers.grading.sandbox.execute",
    "SandboxedExecute": "labhelpers.grading.sandbox.execute",
    "configure_execution": "labhelpers.grading.sandbox.execute",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
