"""Cheats and hostile code gain nothing and cost only their author: each case's exact score and status.

Every student answers Exercises 1–2 like `reference` (correctly, or with a wrong answer where the attack is meant to
hide it) and adds one attack: patching the libraries, the checks, PEFT or the grader's files, delegating to reference
code, forging the probe's records or nbgrader's grade cells, or plain sabotage (crashes, writes, kills; hangs, floods
and memory bombs in the notebook run are tested with real kernels in tests/integration/grading/sandbox/test_kernel.py).
The class is graded once (--jobs 2 --run-notebooks: student code runs in the notebook's sandbox as well as the
probes'). The score is the judge's, outside the sandbox, so no patch inside the submission can reach it.
"""

from __future__ import annotations

import csv
import hashlib
import html
import os
import sys
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading import GradingOptions, grade
from labhelpers.grading.course import points_by_exercise, release
from labhelpers.grading.samples import answered, answers_of_exercises, write_submission

pytestmark = [pytest.mark.grading_e2e, pytest.mark.slow, pytest.mark.xdist_group("grading_adversarial")]

TIMEOUT_CELL = 30
CANARY = "graded_by_student.txt"
EX1, EX2, EX5 = "decompose_weight", "dora_linear", "magnitude_direction_change"
IN_PROBE = (
    "    import os as _os\n    _in_probe = not _os.path.isdir('/data/sst2')  # the probe's sandbox has no data\n"
)

WRONG_DECOMPOSE = "def decompose_weight(W):\n    m = W.norm(dim=0, keepdim=True)\n    return m, W / m\n"
# A DoRALinear whose forward forgets the scaling: wrong against PEFT from the first compared run.
WRONG_FORWARD = ("self.scaling * ", "")

PATCH_TORCH = (
    "import torch, torch.testing\n"
    "torch.allclose = lambda *a, **k: True\n"
    "torch.equal = lambda *a, **k: True\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
    "torch.Tensor.__le__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)\n"
)
PATCH_NUMPY = (
    "import numpy\nnumpy.allclose = lambda *a, **k: True\nnumpy.isclose = lambda *a, **k: True\n"
    "numpy.testing.assert_allclose = lambda *a, **k: None\n"
)
PATCH_BUILTINS = (
    "import builtins\n"
    "builtins.abs = lambda x: 0 * x\n"
    "builtins.all = lambda x: True\n"
    "builtins.round = lambda *a, **k: 0\n"
    "builtins.sum = lambda *a, **k: 0\n"
)
REDEFINE_CHECK = (
    "import labhelpers.checks as _checks\n"
    "_checks.check_decompose_weight = lambda *a, **k: print('✔')\n"
    "def check_decompose_weight(*args, **kwargs):\n    print('✔ decompose_weight passed')\n"
)
# The first cheat: change the code of a function the check relies on, from inside the class body.
CODE_OBJECT_IN_CLASS_BODY = (
    "    import labhelpers.checks.dora_linear as _judged\n"
    "    _judged.judge.__code__ = (lambda spec, obs: 'all fine').__code__\n"
)
# The second cheat: patch PEFT's DoRA layer (the check's reference) so that it agrees with the wrong forward.
PEFT_IN_CLASS_BODY = (
    "    import peft.tuners.lora.dora as _dora\n"
    "    _peft_forward = getattr(_dora.DoraLinearLayer, 'forward', None)\n"
    "    def _unscaled(self, x, _peft_forward=_peft_forward, **kwargs):\n"
    "        return _peft_forward(self, x, **{**kwargs, 'scaling': 1.0})\n"
    "    _dora.DoraLinearLayer.forward = _unscaled\n"
)
DEFAULT_ARGUMENT = (
    "def decompose_weight(W, _=setattr(__import__('labhelpers.checks.decompose', fromlist=['x']), 'judge',\n"
    "                                  lambda spec, obs: 'all fine')):\n"
    "    m = W.norm(dim=0, keepdim=True)\n    return m, W / m\n"
)
DECORATOR = (
    "def _silence_checks(function):\n"
    "    import labhelpers.checks.decompose as _d\n"
    "    _d.judge = lambda spec, obs: 'all fine'\n"
    "    return function\n\n"
    "@_silence_checks\n" + WRONG_DECOMPOSE
)
IMPORT_HOOK = (
    "    import sys, types, importlib.abc, importlib.util\n"
    "    class _Fake(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
    "        def find_spec(self, name, path, target=None):\n"
    "            return importlib.util.spec_from_loader(name, self) if name.startswith('labhelpers.checks') else None\n"
    "        def create_module(self, spec):\n"
    "            return types.ModuleType(spec.name)\n"
    "        def exec_module(self, module):\n"
    "            module.judge = lambda spec, obs: 'all fine'\n"
    "    sys.meta_path.insert(0, _Fake())\n"
)
THREAD_FORGER = (
    "    import threading, time, os, json\n"
    "    def _forge():\n"
    "        while True:\n"
    "            for name in os.listdir('/home/student/observations') if os.path.isdir('/home/student/observations') else []:\n"
    "                if name.startswith('decompose') and name.endswith('.json'):\n"
    "                    open('/home/student/observations/' + name, 'w').write(json.dumps({'passed': True}))\n"
    "            time.sleep(0.001)\n"
    "    threading.Thread(target=_forge, daemon=True).start()\n"
)
ATEXIT_FORGER = (
    "    import atexit, os, json\n"
    "    def _forge():\n"
    "        for name in os.listdir('/home/student/observations'):\n"
    "            if name.startswith('decompose') and name.endswith('.json'):\n"
    "                open('/home/student/observations/' + name, 'w').write(json.dumps({'case0/result': 'passed'}))\n"
    "    atexit.register(_forge)\n"
)
# Writes a "passing" record for the DoRA test before the probe runs, and plants a link where the grader reads.
PLANTED_RECORDS = (
    "    import os, json\n"
    "    if _in_probe:\n"
    "        os.makedirs('/home/student/observations', exist_ok=True)\n"
    "        open('/home/student/observations/dora_linear_matches_peft.0.json', 'w').write(json.dumps({'ok': True}))\n"
    "        os.symlink('/etc/shadow', '/home/student/observations/dora_linear_matches_peft.1.json')\n"
)
# Patches the probe's recorder so that it writes values the wrong answer did not produce.
FORGED_PROBE = (
    "    import labhelpers.probes.core as _core\n"
    "    _record = _core.Observation.tensor\n"
    "    def _tensor(self, key, value):\n"
    "        import torch\n"
    "        _record(self, key, torch.ones_like(value) if key.endswith('magnitude') else value)\n"
    "    _core.Observation.tensor = _tensor\n"
)
DELEGATE_PEFT = (
    "import torch.nn as nn\n"
    "from peft import LoraConfig, inject_adapter_in_model\n"
    "from torch.func import functional_call\n\n"
    "class _Holder(nn.Module):\n"
    "    def __init__(self, layer):\n"
    "        super().__init__()\n"
    "        self.layer = layer\n\n"
    "class DoRALinear(nn.Module):\n"
    "    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):\n"
    "        super().__init__()\n"
    "        config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=['layer'],\n"
    "                            use_dora=True)\n"
    "        inner = inject_adapter_in_model(config, _Holder(base_layer)).layer\n"
    "        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r\n"
    "        self.scaling = lora_alpha / r\n"
    "        self.weight, self.bias = base_layer.weight, base_layer.bias\n"
    "        self.lora_dropout = inner.lora_dropout['default']\n"
    "        self.lora_A = inner.lora_A['default'].weight\n"
    "        self.lora_B = inner.lora_B['default'].weight\n"
    "        self.magnitude = nn.Parameter(inner.lora_magnitude_vector['default'].weight.detach().clone().view(-1, 1))\n"
    "        inner.lora_magnitude_vector['default'].weight.requires_grad_(False)\n"
    "        object.__setattr__(self, '_inner', inner)\n\n"
    "    def forward(self, x):\n"
    "        magnitude = {'lora_magnitude_vector.default.weight': self.magnitude.view(-1)}\n"
    "        return functional_call(self._inner, magnitude, (x,))\n"
)
DELEGATE_ANALYSIS = "from labhelpers.weights import magnitude_direction_change\n"
DELEGATE_CHECK_REFERENCE = (
    "def decompose_weight(W):\n"
    "    from labhelpers.checks.decompose import row_norms\n"
    "    m = row_norms(W)\n"
    "    return m, W / m.clamp_min(1e-12)\n"
)
SEARCH_THE_DISK = (
    "import os\n"
    "_seen = 0\n"
    "for _root, _dirs, _files in os.walk('/'):\n"
    "    _seen += 1\n"
    "    _dirs[:] = [d for d in _dirs if os.path.join(_root, d) not in ('/proc', '/sys', '/dev', '/usr')\n"
    "                and d not in ('site-packages', 'lib', 'include', 'share')]\n"
    "    for _name in _files:\n"
    "        if _name.endswith(('.ipynb', '.csv', '.db')) or _name.startswith('grading_secret'):\n"
    "            print('FOUND', os.path.join(_root, _name))\n"
    "print('searched', _seen, 'folders')\n"
)
NETWORK = (
    "import socket\n"
    "for _host, _port in (('127.0.0.1', 22), ('127.0.0.1', 8888), ('1.1.1.1', 53)):\n"
    "    try:\n"
    "        socket.create_connection((_host, _port), timeout=2).close()\n"
    "        print('CONNECTED', _host, _port)\n"
    "    except OSError as error:\n"
    "        print('no network', _host, _port, type(error).__name__)\n"
)
# kill(-1) spares its caller: the kernel dies with its sandbox a moment later, and the cell must still be running then.
KILL_EVERYTHING = "import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(10)\n"
FORGED_GRADE_CELL = {
    "grade": True, "grade_id": "extra_credit", "locked": True, "points": 100, "schema_version": 3, "solution": False,
    "task": False,
}  # fmt: skip
HANG_IN_PROBE = "    import signal\n    if _in_probe:\n        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n        while True:\n            pass\n"


def write_everywhere(out: Path, submissions: Path) -> str:
    targets = [
        PROJECT_ROOT / CANARY,
        PROJECT_ROOT / "labhelpers" / "checks" / CANARY,
        out / "gradebook.db",
        out / "grades.csv",
        submissions / "reference" / "dora_lab.ipynb",
        SOURCE_NOTEBOOK,
        Path("/root") / CANARY,
    ]
    # fmt: skip
    return (
        "import os, signal, sys, time\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n        open(path, 'a').write('x')\n        print('W' + 'ROTE', path)\n"
        "    except OSError as error:\n        print('refused', path, type(error).__name__)\n"
        # Its output must reach the grader before the kill ends the kernel, or there is nothing to read back.
        "sys.stdout.flush()\ntime.sleep(2)\n"
        "try:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError as error:\n    print('grader', 'survived', error)\n"
        # The kernel dies with its sandbox a moment after the kill: the cell must still be running then (a cell that
        # ended first would let the next one start, and the death be told in that cell).
        "time.sleep(10)\n"
    )


def _in_class_body(source: str, code: str) -> str:
    """Put code at the top of the class body of the DoRALinear answer (it runs when the class is defined)."""
    head, _, rest = source.partition("class DoRALinear(nn.Module):\n")
    docstring_end = rest.index('"""', rest.index('"""') + 3) + 3
    return (
        head + "class DoRALinear(nn.Module):\n" + rest[:docstring_end] + "\n" + IN_PROBE + code + rest[docstring_end:]
    )


def _wrong_forward(source: str) -> str:
    right, wrong = WRONG_FORWARD
    assert right in source, "the solution no longer contains the scaling this test removes: update WRONG_FORWARD"
    return source.replace(right, wrong)


@pytest.fixture(scope="session")
def hostile_class(tmp_path_factory, sst2_dir):
    source = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    root = tmp_path_factory.mktemp("course")
    (root / "solutions" / "dora").mkdir(parents=True)
    (root / "solutions" / "dora" / "dora_lab.ipynb").write_bytes(SOURCE_NOTEBOOK.read_bytes())
    student = nbformat.read(release(root), as_version=4)
    good = answers_of_exercises(source, {1, 2})
    measure = answers_of_exercises(source, {5})[EX5]
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("graded")

    def submit(student_id: str, answers: dict[str, str], notebook=None, name="dora_lab.ipynb") -> None:
        write_submission(folder, student_id, answered(notebook or student, {**good, **answers}), name=name)

    def after(cell: str, code: str) -> dict[str, str]:
        return {cell: good[cell] + "\n\n" + code}

    def class_body(code: str, wrong: bool = True) -> dict[str, str]:
        answer = _wrong_forward(good[EX2]) if wrong else good[EX2]
        return {EX2: _in_class_body(answer, code)}

    submit("reference", {})
    tampered, deleted = answered(student, {}), answered(student, {})
    for cell in tampered.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "decompose_weight_matches_definition":
            cell.source = "print('✔ all good')"
    deleted.cells = [
        c
        for c in deleted.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "decompose_weight_matches_definition"
    ]
    forged = answered(student, {})  # a grade cell of its own: nbgrader would add its points to the score
    forged.cells.append(nbformat.v4.new_code_cell("assert True", metadata={"nbgrader": FORGED_GRADE_CELL}))
    submit("forged_grade_cell", {}, notebook=forged)
    submit("tampered_test_cell", {EX1: WRONG_DECOMPOSE}, notebook=tampered)
    submit("deleted_test_cell", {EX1: WRONG_DECOMPOSE}, notebook=deleted)
    submit("patch_torch", {EX1: PATCH_TORCH + WRONG_DECOMPOSE})
    submit("patch_numpy", {EX1: PATCH_NUMPY + WRONG_DECOMPOSE})
    submit("patch_builtins", {EX1: WRONG_DECOMPOSE + PATCH_BUILTINS})
    submit("redefine_check", {EX1: REDEFINE_CHECK + WRONG_DECOMPOSE})
    submit("code_object_in_class_body", class_body(CODE_OBJECT_IN_CLASS_BODY))
    submit("patch_peft_in_class_body", class_body(PEFT_IN_CLASS_BODY))
    submit("default_argument", {EX1: DEFAULT_ARGUMENT})
    submit("decorator", {EX1: DECORATOR})
    submit("import_hook", class_body(IMPORT_HOOK))
    submit("thread_forges_records", {**class_body(THREAD_FORGER, wrong=False), EX1: WRONG_DECOMPOSE})
    submit("atexit_forges_records", {**class_body(ATEXIT_FORGER, wrong=False), EX1: WRONG_DECOMPOSE})
    submit("planted_records", class_body(PLANTED_RECORDS))
    submit("forged_probe", {**class_body(FORGED_PROBE, wrong=False), EX1: WRONG_DECOMPOSE})
    submit("delegate_peft_dora", {EX2: DELEGATE_PEFT})
    submit("delegate_lab_analysis", {EX5: DELEGATE_ANALYSIS})
    submit("delegate_check_reference", {EX1: DELEGATE_CHECK_REFERENCE})
    submit("measure_reference", {EX5: measure})
    submit("hang_in_probe", class_body(HANG_IN_PROBE, wrong=False))
    submit("search_the_disk", after(EX1, SEARCH_THE_DISK))
    submit("network", after(EX1, NETWORK))
    submit("writes_everywhere", after(EX1, write_everywhere(out, folder)))
    submit("kill_everything", after(EX2, KILL_EVERYTHING))
    submit("os_exit", after(EX2, "import os\nos._exit(0)\n"))
    submit("wrong_name", {}, name="my_dora_lab.ipynb")
    (folder / "corrupt_json").mkdir()
    (folder / "corrupt_json" / "dora_lab.ipynb").write_text('{"cells": [')
    (folder / "not_a_notebook").mkdir()
    (folder / "not_a_notebook" / "dora_lab.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "symlink").mkdir()
    (folder / "symlink" / "dora_lab.ipynb").symlink_to(folder / "reference" / "dora_lab.ipynb")

    watched = [SOURCE_NOTEBOOK, folder / "reference" / "dora_lab.ipynb"]
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in watched}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_DATA_DIR", str(sst2_dir))
        patch.setenv("LAB_FAST", "1")
        patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        path = grade(
            folder,
            out,
            GradingOptions(jobs=2, timeout_cell=TIMEOUT_CELL, timeout_submission=400, run_notebooks=True),
            progress=False,
        )
    after_hashes = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in watched}
    with open(path, newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    return {"rows": rows, "out": out, "source": source, "unchanged": before == after_hashes}


DISAGREE = "the notebook's own run disagreed on {} (the grader's verdict counts)"
UNAVAILABLE = "used the lab's reference code or PEFT's DoRA layer (no points): {}"
LOADED = "answer cell {}, line 1: {}"
# The bonus stub subclasses DoRALinear: when DoRALinear cannot be loaded, neither can it.
STUB = "answer cell efficient_dora_linear, line 1: NameError: name 'DoRALinear' is not defined"
D1, D2, D5 = (
    "decompose_weight_matches_definition",
    "dora_linear_matches_peft",
    "magnitude_direction_change_matches_paper",
)
# (student id, exercises it answers beyond 1-2, exercises whose points it loses, its whole status in grades.csv).
CASES = [
    ("forged_grade_cell", (), (), "removed forged grade cell extra_credit (100 points): please review"),
    ("tampered_test_cell", (), (1,), "repaired: edited test cell decompose_weight_matches_definition restored"),
    ("deleted_test_cell", (), (1,), "repaired: deleted test cell decompose_weight_matches_definition restored"),
    ("patch_torch", (), (1,), "ok"),
    ("patch_numpy", (), (1,), "ok"),
    ("patch_builtins", (), (1,), DISAGREE.format(D2)),
    ("redefine_check", (), (1,), DISAGREE.format(D1)),
    (
        "code_object_in_class_body",
        (),
        (2,),
        LOADED.format(
            "dora_linear",
            "ReferenceUnavailable: labhelpers.checks is part of the lab's own code, not available to graded answers",
        )
        + "; "
        + STUB
        + "; "
        + DISAGREE.format(D2),
    ),
    ("patch_peft_in_class_body", (), (2,), DISAGREE.format(D2)),
    (
        "default_argument",
        (),
        (1,),
        LOADED.format(
            "decompose_weight",
            "ReferenceUnavailable: labhelpers.checks is part of the lab's own code, not available to graded answers",
        )
        + "; "
        + DISAGREE.format(D1),
    ),
    (
        "decorator",
        (),
        (1,),
        LOADED.format(
            "decompose_weight",
            "ReferenceUnavailable: labhelpers.checks is part of the lab's own code, not available to graded answers",
        ).replace("line 1", "line 7")
        + "; "
        + DISAGREE.format(D1),
    ),
    ("import_hook", (), (2,), "ok"),
    ("thread_forges_records", (), (1,), "ok"),
    ("atexit_forges_records", (), (1,), "ok"),
    ("planted_records", (), (2,), "no usable record from the checks: dora_linear_matches_peft"),
    ("forged_probe", (), (1, 2), "no usable record from the checks: " + D1 + ", " + D2),
    ("delegate_peft_dora", (), (2,), UNAVAILABLE.format(D2) + "; " + DISAGREE.format(D2)),
    ("delegate_lab_analysis", (5,), (5,), UNAVAILABLE.format(D5) + "; " + DISAGREE.format(D5)),
    ("delegate_check_reference", (), (1,), UNAVAILABLE.format(D1) + "; " + DISAGREE.format(D1)),
    ("measure_reference", (5,), (), "ok"),
    (
        "hang_in_probe",
        (),
        (2,),
        STUB
        + "; answer cell dora_linear: a statement that did not finish loading was skipped; "
        + DISAGREE.format(D2),
    ),
    ("search_the_disk", (), (), "ok"),
    ("network", (), (), "ok"),
    (
        "writes_everywhere",
        (),
        (),
        "the kernel was killed by signal 9 in cell decompose_weight; " + DISAGREE.format(D1 + ", " + D2),
    ),
    ("kill_everything", (), (), "the kernel was killed by signal 9 in cell dora_linear; " + DISAGREE.format(D2)),
    ("os_exit", (), (), "the kernel exited with code 0 in cell dora_linear; " + DISAGREE.format(D2)),
    ("wrong_name", (), (), "notebook named my_dora_lab.ipynb, graded as dora_lab.ipynb"),
]
BROKEN = [
    ("corrupt_json", "dora_lab.ipynb is not a valid notebook (Notebook does not appear to be JSON: '{\"cells\": [')"),
    ("not_a_notebook", "dora_lab.ipynb is not a valid notebook ('utf-8' codec can't decode byte 0x89 in position 0: "
                       "invalid start byte)"),
    ("symlink", "dora_lab.ipynb is not a regular file (links are not followed)"),
]  # fmt: skip


def test_reference_scores_exercises_1_and_2(hostile_class):
    rows, source = hostile_class["rows"], hostile_class["source"]
    by_exercise = points_by_exercise(source)
    assert float(rows["reference"]["score"]) == by_exercise[1] + by_exercise[2]
    assert rows["reference"]["status"] == "ok"


@pytest.mark.parametrize("student_id, answers, lost, status", CASES, ids=[case[0] for case in CASES])
def test_a_cheat_gains_nothing_and_costs_only_its_author(hostile_class, student_id, answers, lost, status):
    rows, source = hostile_class["rows"], hostile_class["source"]
    by_exercise = points_by_exercise(source)
    expected = sum(by_exercise[n] for n in (1, 2, *answers)) - sum(by_exercise[n] for n in lost)
    row = rows[student_id]
    assert (float(row["score"]), row["status"]) == (expected, status)


@pytest.mark.parametrize("student_id, status", BROKEN, ids=[case[0] for case in BROKEN])
def test_unreadable_submission_scores_zero_with_a_reason(hostile_class, student_id, status):
    row = hostile_class["rows"][student_id]
    assert float(row["score"]) == 0 and row["status"] == status
    assert (hostile_class["out"] / "feedback" / student_id / "dora_lab.html").is_file()


def _outputs(hostile_class, student_id: str, cell: str) -> str:
    """The text of a cell's outputs in the feedback (the autograded notebook it is made from)."""
    path = hostile_class["out"] / "course" / "autograded" / student_id / "dora" / "dora_lab.ipynb"
    for each in nbformat.read(path, as_version=4).cells:
        if each.metadata.get("nbgrader", {}).get("grade_id") == cell:
            return "".join(o.get("text", "") + o.get("evalue", "") for o in each.get("outputs", []))
    raise AssertionError(f"no cell {cell}")


def test_no_student_wrote_outside_its_sandbox_or_reached_the_grader(hostile_class):
    assert hostile_class["unchanged"], "a project file, the instructor's notebook or a classmate's submission changed"
    assert not (PROJECT_ROOT / CANARY).exists() and not (PROJECT_ROOT / "labhelpers" / "checks" / CANARY).exists()
    assert not (Path("/root") / CANARY).exists()
    printed = _outputs(hostile_class, "writes_everywhere", EX1)
    # Its last act, killing its parent, ends its own sandbox (the kernel), never the grader: the class was graded.
    assert (
        "WROTE" not in printed
        and printed.count("refused") == 7
        and len(hostile_class["rows"]) == len(CASES) + len(BROKEN) + 1
    )


def test_searching_the_disk_finds_only_its_own_files(hostile_class):
    printed = _outputs(hostile_class, "search_the_disk", EX1)
    found = [line for line in printed.splitlines() if line.startswith("FOUND")]
    assert "searched" in printed and all(line.startswith("FOUND /home/student/") for line in found), found


def test_there_is_no_network(hostile_class):
    printed = _outputs(hostile_class, "network", EX1)
    assert "CONNECTED" not in printed and printed.count("no network") == 3


def test_feedback_shows_no_path_of_the_grading_machine(hostile_class):
    for student_id in ("search_the_disk", "reference", "os_exit", "network"):
        page = html.unescape((hostile_class["out"] / "feedback" / student_id / "dora_lab.html").read_text())
        for path in (str(hostile_class["out"]), str(PROJECT_ROOT), sys.prefix, sys.base_prefix, "/tmp/dora-grading-"):
            assert path not in page, (student_id, path)
