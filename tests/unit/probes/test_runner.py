"""Loading a submission's answer cells for the probes: IPython syntax, Python cell magics, and no shell command run.

The loader runs here, unsandboxed, on cells written for the test (in grading it runs in the probe sandbox).
"""

from __future__ import annotations

import builtins

from labhelpers.probes.runner import Progress, load


def _load(tmp_path, *sources: str) -> tuple[dict, list[str]]:
    request = {"answers": [{"label": f"answer cell {n}", "source": source} for n, source in enumerate(sources)]}
    namespace: dict = {"__name__": "__main__"}
    notes = load(request, namespace, Progress(tmp_path / "progress"))
    return namespace, notes


def test_definitions_in_cells_with_ipython_syntax_are_loaded(tmp_path):
    namespace, notes = _load(
        tmp_path,
        "%%time\ndef decompose(w):\n    return w\n",
        "!pip install peft\n%load_ext autoreload\n%matplotlib inline\nclass Layer:\n    pass\n\nLayer?\n",
        "%%capture captured\n?print\ndef train():\n    return 1\n",
    )
    assert notes == []
    assert {"decompose", "Layer", "train"} <= set(namespace)
    assert namespace["train"]() == 1


def test_shell_commands_and_magics_are_never_run(tmp_path):
    canary = tmp_path / "ran"
    _, notes = _load(
        tmp_path,
        f"!touch {canary}\nfiles = !touch {canary}\n%system touch {canary}\n",
        f"%%bash\ntouch {canary}\n",
        f"%%writefile {canary}\nx = 1\n",
        "%%capture\n!touch " + str(canary) + "\ndef f():\n    pass\n",
    )
    assert not canary.exists()
    assert notes == [
        "answer cell 1: %%bash cell not loaded (its body is not Python)",
        "answer cell 2: %%writefile cell not loaded (its body is not Python)",
    ]
    namespace, _ = _load(tmp_path, "!ls\n%load_ext autoreload\n")
    assert "get_ipython" not in namespace and not hasattr(builtins, "get_ipython")


def test_a_timeit_cell_is_loaded_for_its_body_with_a_note(tmp_path):
    namespace, notes = _load(tmp_path, "%%timeit -n1\ndef f():\n    return 2\n")
    assert namespace["f"]() == 2
    assert notes == [
        "answer cell 0: %%timeit runs its body in a function of its own: its definitions were loaded all the same"
    ]


def test_a_failing_statement_in_a_cell_magic_is_reported_at_its_line_in_the_cell(tmp_path):
    namespace, notes = _load(tmp_path, "%%time\ndef f():\n    return 1\n\nx = undefined_name\n")
    assert "f" in namespace
    assert notes == ["answer cell 0, line 5: NameError: name 'undefined_name' is not defined"]
