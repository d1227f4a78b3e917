"""labhelpers.cli: each `dora-lab` command parses its options into the call it forwards to, a user's mistake ends
in one line naming the command, and each command's --help lists its options.

The forwarded-to functions are replaced by recorders: these tests check the wiring, not the grader or the benchmark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from labhelpers import bench, cli, data, grading
from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.bench import parallel_grading
from labhelpers.config import PROJECT_ROOT
from labhelpers.errors import LabDataError, LabGradingError
from labhelpers.grading import commands, exchange
from labhelpers.grading.selection import WHOLE_CLASS, Selection, Shard

COURSE = Path("/courses/dora")
COURSE_SOURCE = COURSE / SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)


@pytest.fixture(autouse=True)
def _path_restored(monkeypatch):
    """main() puts the venv's bin/ on PATH (nbgrader needs alembic): give the next test the PATH it had."""
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))


@pytest.fixture
def forwarded(monkeypatch):
    """Replace the functions the commands forward to; return the list of (name, args, kwargs) they were called with."""
    calls = []

    def recorder(name, returns=None):
        def record(*args, **kwargs):
            calls.append((name, args, kwargs))
            return returns

        return record

    done = SimpleNamespace(summary=lambda: "summary of the exchange")
    for target, name, returns in [
        (grading, "release", Path("notebooks/dora/dora_lab.ipynb")),
        (grading, "grade", Path("graded/grades.csv")),
        (grading, "regenerate_feedback", None),
        (grading, "write_grades_csv", Path("graded/grades.csv")),
        (exchange, "release_to_exchange", (Path("exchange/dora"), ["a warning"])),
        (exchange, "collect_submissions", done),
        (exchange, "return_feedback", done),
        (commands, "summary", "3 submissions"),
        (commands, "status", "release up to date"),
        (commands, "sample_class", SimpleNamespace(summary=lambda: "wrote samples")),
        (bench, "run_lab_bench", []),
        (parallel_grading, "bench_grading", parallel_grading.GradingBenchResult(2.0, 1.0, identical=True)),
        (data, "download_sst2", Path("data/sst2")),
    ]:
        monkeypatch.setattr(target, name, recorder(name, returns))
    return calls


CASES = [
    ("release", ["release"], [("release", (PROJECT_ROOT.resolve(),), {})]),
    ("release_course", ["release", "--course", str(COURSE)], [("release", (COURSE.resolve(),), {})]),
    (
        "release_exchange",
        ["release", "--exchange", "--force", "--course", str(COURSE)],
        [("release_to_exchange", (COURSE,), {"force": True})],
    ),
    ("collect", ["collect", "--course", str(COURSE)], [("collect_submissions", (COURSE,), {})]),
    (
        "grade_defaults",
        ["grade", "subs", "--out", "graded"],
        [
            (
                "grade",
                (
                    Path("subs"),
                    Path("graded"),
                    grading.GradingOptions(jobs=1, timeout_cell=120, timeout_submission=600, memory_bytes=6 * 2**30),
                ),
                {"source_notebook": SOURCE_NOTEBOOK, "progress": True, "selection": WHOLE_CLASS, "secret": None},
            ),
            ("summary", (Path("graded/grades.csv"),), {}),
        ],
    ),
    (
        "grade_every_option",
        ["grade", "subs", "--out", "graded", "--jobs", "3", "--timeout-cell", "5", "--timeout-submission", "50"]
        + ["--memory-gb", "1.5", "--quiet", "--no-sandbox", "--run-notebooks", "--course", str(COURSE)],
        [
            (
                "grade",
                (
                    Path("subs"),
                    Path("graded"),
                    grading.GradingOptions(
                        jobs=3,
                        timeout_cell=5,
                        timeout_submission=50,
                        memory_bytes=int(1.5 * 2**30),
                        sandbox=False,
                        run_notebooks=True,
                    ),
                ),
                {"source_notebook": COURSE_SOURCE, "progress": False, "selection": WHOLE_CLASS, "secret": None},
            ),
            ("summary", (Path("graded/grades.csv"),), {}),
        ],
    ),
    (
        "grade_a_shard_some_students_some_tests",
        ["grade", "subs", "--out", "graded", "--shard", "1/3", "--secret", "key"]
        + ["--student", "a", "b", "--only", "t"],
        [
            (
                "grade",
                (Path("subs"), Path("graded"), grading.GradingOptions()),
                {
                    "source_notebook": SOURCE_NOTEBOOK,
                    "progress": True,
                    "selection": Selection(Shard(1, 3), ("a", "b"), ("t",)),
                    "secret": Path("key"),
                },
            ),
            ("summary", (Path("graded/grades.csv"),), {}),
        ],
    ),
    ("feedback", ["feedback", "graded"], [("regenerate_feedback", (Path("graded"),), {})]),
    ("return", ["return", "graded"], [("return_feedback", (Path("graded"),), {})]),
    ("export", ["export", "graded"], [("write_grades_csv", (Path("graded").resolve(), None), {})]),
    (
        "export_csv",
        ["export", "graded", "--csv", "out.csv"],
        [("write_grades_csv", (Path("graded").resolve(), Path("out.csv")), {})],
    ),
    ("status", ["status"], [("status", (None, PROJECT_ROOT), {})]),
    ("status_of_a_run", ["status", "graded"], [("status", (Path("graded"), PROJECT_ROOT), {})]),
    ("status_course", ["status", "--course", str(COURSE)], [("status", (None, COURSE), {})]),
    ("sample_class", ["sample-class", "samples"], [("sample_class", (Path("samples"), PROJECT_ROOT), {})]),
    (
        "sample_class_course",
        ["sample-class", "samples", "--course", str(COURSE)],
        [("sample_class", (Path("samples"), COURSE), {})],
    ),
    ("bench_defaults", ["bench"], [("run_lab_bench", (bench.LabBenchOptions(),), {})]),
    (
        "bench_every_option",
        ["bench", "--out", "b.json", "--solution", "s.py", "--sizes", "20x12", "8x4", "--tokens", "4", "6"]
        + ["--dropouts", "0", "0.5", "--r", "2", "--lora-alpha", "4", "--repeats", "3", "--warmup", "1"]
        + ["--threads", "1", "--clock", "cpu", "--no-input-grad"],
        [
            (
                "run_lab_bench",
                (
                    bench.LabBenchOptions(
                        out=Path("b.json"),
                        solution=Path("s.py"),
                        sizes=((20, 12), (8, 4)),
                        tokens=(4, 6),
                        dropouts=(0.0, 0.5),
                        r=2,
                        lora_alpha=4.0,
                        repeats=3,
                        warmup=1,
                        threads=1,
                        clock="cpu",
                        input_requires_grad=False,
                    ),
                ),
                {},
            )
        ],
    ),
    (
        "bench_grading_defaults",
        ["bench-grading"],
        [("bench_grading", (parallel_grading.GradingBenchOptions(),), {})],
    ),
    (
        "bench_grading_every_option",
        ["bench-grading", "--students", "4", "--jobs", "3", "--source", "s.ipynb", "--kinds", "complete,untouched"]
        + ["--run-notebooks"],
        [
            (
                "bench_grading",
                (parallel_grading.GradingBenchOptions(4, 3, Path("s.ipynb"), ("complete", "untouched"), True),),
                {},
            )
        ],
    ),
    ("data_download", ["data", "download"], [("download_sst2", (data.PROJECT_DATA_DIR,), {})]),
    ("data_download_to", ["data", "download", "sst2"], [("download_sst2", (Path("sst2"),), {})]),
]


@pytest.mark.parametrize("argv, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_command_forwards_its_options(forwarded, argv, expected):
    cli.main(argv)
    assert forwarded == expected


@pytest.mark.parametrize(
    "argv, printed",
    [
        (["release"], "wrote notebooks/dora/dora_lab.ipynb\n"),
        (
            ["release", "--exchange"],
            "a warning\nreleased exchange/dora/: students fetch it from the Assignments tab\n",
        ),
        (["collect"], "summary of the exchange\n"),
        (["grade", "subs", "--out", "graded"], "3 submissions\nwrote graded/grades.csv and graded/feedback/\n"),
        (["feedback", "graded"], "wrote graded/feedback/\n"),
        (["return", "graded"], "summary of the exchange\n"),
        (["export", "graded"], "wrote graded/grades.csv\n"),
        (["status"], "release up to date\n"),
        (["sample-class", "samples"], "wrote samples\n"),
    ],
    ids=["release", "release_exchange", "collect", "grade", "feedback", "return", "export", "status", "sample_class"],
)
def test_grading_commands_print_what_they_did(forwarded, capsys, argv, printed):
    cli.main(argv)
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize("clock", list(bench.CLOCKS))
def test_bench_accepts_every_clock_of_the_benchmark(forwarded, clock):
    cli.main(["bench", "--clock", clock])
    assert forwarded == [("run_lab_bench", (bench.LabBenchOptions(clock=clock),), {})]


def fail(error):
    def raising(*args, **kwargs):
        raise error

    return raising


@pytest.mark.parametrize(
    "argv, target, name, error",
    [
        (["data", "download"], data, "download_sst2", LabDataError("SST-2 is not on the hub: set LAB_DATA_DIR.")),
        (["grade", "subs", "--out", "graded"], grading, "grade", LabGradingError("nbgrader failed: look at it.")),
        (["bench"], bench, "run_lab_bench", LabDataError("no solutions: pass --solution.")),
    ],
    ids=["data", "grade", "bench"],
)
def test_a_lab_error_ends_in_one_line_naming_the_command(monkeypatch, argv, target, name, error):
    monkeypatch.setattr(target, name, fail(error))
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == f"dora-lab {argv[0]}: {error}"


def test_bench_with_a_missing_solution_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["bench", "--solution", str(tmp_path / "nowhere.ipynb")])
    assert stopped.value.code.startswith(f"dora-lab bench: {tmp_path / 'nowhere.ipynb'} does not exist: pass the")


def test_bench_grading_with_different_grades_exits_with_1(monkeypatch):
    result = parallel_grading.GradingBenchResult(2.0, 1.0, identical=False)
    monkeypatch.setattr(parallel_grading, "bench_grading", lambda options: result)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["bench-grading"])
    assert stopped.value.code == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["bench", "--sizes", "1024"],
            "dora-lab bench: error: argument --sizes: '1024': write OUTxIN, e.g. 4096x1024",
        ),
        (["bench", "--dropouts", "1.0"], "dora-lab bench: error: argument --dropouts: 1: a dropout probability is in"),
        (["bench", "--dropouts", "-0.1"], "dora-lab bench: error: argument --dropouts: -0.1: a dropout probability"),
        (["bench", "--dropouts", "some"], "dora-lab bench: error: argument --dropouts: invalid float value: 'some'"),
        (["bench", "--clock", "gpu"], "dora-lab bench: error: argument --clock: invalid choice: 'gpu'"),
        (["bench-grading", "--jobs", "two"], "dora-lab bench-grading: error: argument --jobs: invalid int value"),
        (["grade", "subs"], "dora-lab grade: error: the following arguments are required: --out"),
        (["data"], "dora-lab data: error: the following arguments are required: action"),
        (["data", "download", "a", "b"], "dora-lab: error: unrecognized arguments: b"),
    ],
    ids=[
        "size_without_x",
        "dropout_1",
        "negative_dropout",
        "dropout_not_a_number",
        "unknown_clock",
        "jobs_not_a_number",
        "grade_without_out",
        "data_without_action",
        "data_two_folders",
    ],
)
def test_a_bad_argument_exits_with_2_and_says_what_is_wrong(forwarded, capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2 and forwarded == []
    assert message in capsys.readouterr().err


def test_bench_grading_with_an_unknown_kind_names_the_kinds():
    with pytest.raises(SystemExit) as stopped:
        cli.main(["bench-grading", "--kinds", "complete,perfect"])
    assert stopped.value.code == (
        "dora-lab bench-grading: kinds=['complete', 'perfect']: use one or more of complete, exercises_1_2, untouched."
    )


def test_force_without_exchange_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["release", "--force"])
    assert stopped.value.code == 2
    assert "--force replaces a release in the exchange: give it with --exchange" in capsys.readouterr().err


def listed(help_text: str) -> set[str]:
    """Return the option strings and positional arguments that a --help text lists, from its argument sections."""
    found, in_arguments = set(), False
    for line in help_text.splitlines():
        if not line.startswith(" "):
            in_arguments = line.endswith("arguments:") or line == "options:"
        elif in_arguments and re.match(r"^  \S", line):
            head = re.split(r"\s{2,}", line.strip())[0]
            names = re.findall(r"(?:^|, )(-{1,2}[\w-]+|[A-Z_]+|\{[\w,-]+\})", head)
            found.update(names)
    return found


HELP = {
    "release": {"-h", "--help", "--course", "--exchange", "--force"},
    "collect": {"-h", "--help", "--course"},
    "grade": {"-h", "--help", "--course", "SUBMISSIONS_DIR", "--out", "--jobs", "--timeout-cell"}
    | {"--timeout-submission", "--memory-gb", "--quiet", "--no-sandbox", "--student", "--only", "--shard", "--secret"}
    | {"--run-notebooks"},
    "feedback": {"-h", "--help", "OUT_DIR"},
    "return": {"-h", "--help", "OUT_DIR"},
    "export": {"-h", "--help", "OUT_DIR", "--csv", "--format", "--roster", "--roster-hub-column", "--assignment"}
    | {"--assignment-id", "--moodle-id"},
    "report": {"-h", "--help", "OUT_DIR", "--dest"},
    "merge": {"-h", "--help", "SHARD_DIR", "--out"},
    "formgrade": {"-h", "--help", "OUT_DIR", "--port", "--ip"},
    "deadline": {"-h", "--help", "OUT_DIR", "--course", "--due", "--penalty-per-day", "--extend"},
    "backup": {"-h", "--help", "OUT_DIR", "DEST"},
    "status": {"-h", "--help", "OUT_DIR", "--course"},
    "sample-class": {"-h", "--help", "SUBMISSIONS_DIR", "--course"},
    "bench": {"-h", "--help", "--out", "--solution", "--sizes", "--tokens", "--dropouts", "--r", "--lora-alpha"}
    | {"--repeats", "--warmup", "--threads", "--clock", "--no-input-grad"},
    "bench-grading": {"-h", "--help", "--students", "--jobs", "--source", "--kinds", "--run-notebooks"},
    "tune": {"-h", "--help", "--n-train", "--n-heldout", "--seeds", "--methods", "--full-lr", "--lora-lr", "--dora-lr"}
    | {"--out"},
    "data": {"-h", "--help", "{download}"},
}


@pytest.mark.parametrize("command", list(HELP))
def test_help_of_each_command_lists_exactly_its_options(capsys, command):
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    assert listed(capsys.readouterr().out) == HELP[command]


def test_help_of_data_download_lists_its_folder(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "download", "--help"])
    assert listed(capsys.readouterr().out) == {"-h", "--help", "DEST"}


def test_help_lists_every_command_in_order(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert re.search(r"\{([\w,-]+)\}", usage)[1].split(",") == list(HELP)


def test_help_imports_neither_torch_nor_nbgrader():
    """Parsing is light: the packages load when a command runs, so `dora-lab --help` answers at once."""
    script = (
        "import sys; from labhelpers import cli; cli._parser().format_help(); "
        "print(sorted({'torch', 'nbgrader'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert run.stdout.strip() == "[]"


def test_tune_forwards_its_options_as_a_tune_options_record(monkeypatch, tmp_path):
    from labhelpers import tuning

    seen = []
    monkeypatch.setattr(tuning, "tune", lambda options: seen.append(options))
    cli.main(["tune", "--n-train", "320", "--n-heldout", "200", "--seeds", "0,1", "--methods", "lora,dora",
              "--lora-lr", "1e-3,2e-3", "--out", str(tmp_path)])  # fmt: skip
    (options,) = seen
    assert (options.n_train, options.n_heldout, options.seeds, options.methods) == (320, 200, (0, 1), ("lora", "dora"))
    assert options.grid["lora"] == (1e-3, 2e-3) and options.grid["dora"] == tuning.GRID["dora"]
    assert options.output_dir == tmp_path


def test_tune_without_options_uses_the_records_defaults(monkeypatch):
    from labhelpers import tuning

    seen = []
    monkeypatch.setattr(tuning, "tune", lambda options: seen.append(options))
    cli.main(["tune"])
    assert seen == [tuning.TuneOptions()]


def test_tune_refuses_a_learning_rate_that_is_not_positive(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["tune", "--dora-lr", "0,1e-3"])
    assert stopped.value.code == 2 and "learning rates must be positive" in capsys.readouterr().err
