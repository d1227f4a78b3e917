"""A class graded end to end, once, in real sandboxes, from a release nbgrader generates now.

The class: the instructor's answers, the untouched release, Exercises 1–2 only, five typical mistakes, the same answers
in nbgrader's collected layout, and honest notebooks edited as JupyterLab, VS Code, Colab and Notebook 6 leave them:
each must get exactly the score its answers deserve. Every honest edit (tests/support/editors.py, HONEST_EDITS) is
rebuilt and passed through nbgrader's own checks in tests/integration/grading/test_matching.py; here, graded end to
end in sandboxes, are the ones that change the notebook's format or many cells at once (E2E_EDITS). The class report counts its mistakes and
pass rates exactly and renders in a browser; part of the class graded as three shards in separate processes and merged
gives the same grades and verdicts. Then a run stopped half-way resumes to the same grades, and a targeted regrade
(one test of one student, then one student) touches no one else.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading import GradingOptions, grade, write_grades_csv
from labhelpers.grading.course import grade_cells, points_by_cell, points_by_exercise
from labhelpers.grading.feedback import NOT_RUN_NOTICE
from labhelpers.grading.ledger import STATUS_FILE
from labhelpers.grading.report import REPORT_HTML, REPORT_JSON, build_report
from labhelpers.grading.samples import answered, answers_of_exercises, perfect, solution_sources, write_submission
from tests.support.course import fresh_release, lab_environment, read_grades
from tests.support.editors import HONEST_EDITS, PASTED_IMAGE

pytestmark = [pytest.mark.xdist_group("grading")]

# Typical mistakes: (student id, answer cell, (right text in the instructor's solution, wrong text), the test it fails,
# the exercises answered, a phrase of the judge's message). Only Exercise 4's mistake trains models (grading time).
MISTAKES = [
    ("dim0_magnitude", "decompose_weight", ("dim=1", "dim=0"), "decompose_weight_matches_definition", {1, 2, 3},
     "you took the norm over dim=0, which gives one number per input feature"),
    ("missing_scaling", "dora_linear", ("self.scaling * ", ""), "dora_linear_matches_peft", {1, 2, 3},
     "the LoRA update is not scaled: V = W0 + s·B·A"),
    ("no_projection", "dora_direction_gradient", ("if detach_norm:", "if True:"), "dora_direction_gradient_matches_autograd",
     {1, 2, 3}, "with detach_norm=False the norm also gets a gradient, but your result is the one of a constant norm"),
    ("no_eval_mode", "training_loop", ("    model.eval()\n", ""), "evaluate_accuracy_matches_reference", {1, 2, 3, 4},
     "ran the model in training mode: dropout is then on"),
    ("delta_d_over_columns", "magnitude_direction_change", ("(W, W0, dim=1)", "(W, W0, dim=0)"),
     "magnitude_direction_change_matches_paper", {1, 2, 3, 5}, "cosines between columns (dim=0): ΔD compares each row"),
]  # fmt: skip
HONEST_ANSWERS = {1, 2, 3}
"""The exercises the honest edited notebooks answer (no training: the class grades in minutes)."""
# Graded end to end (each costs a sandboxed notebook run): every editor's save format, a split class, a pasted cell
# with the same id, a changed cell type, an answer merged with its test, and everything at once; then the honest
# notebooks that used to lose points: IPython syntax in answer cells, an answer written in another answer cell, and a
# pasted image in a written answer.
E2E_EDIT_NAMES = {
    "notebook6_save",
    "colab_save",
    "vscode_split_class",
    "vscode_paste_same_id",
    "lab_type_changed",
    "lab_merge_answer_with_test",
    "everything_then_colab",
    "lab_ipython_syntax",
    "lab_answers_in_first_cell",
    "lab_pasted_image",
}
E2E_EDITS = tuple(edit for edit in HONEST_EDITS if edit.name in E2E_EDIT_NAMES)


def _wrong(source: str, right: str, wrong: str) -> str:
    assert right in source, f"the solution no longer contains {right!r}: update MISTAKES"
    return source.replace(right, wrong)


@pytest.fixture(scope="session")
def lab_env(sst2_dir):
    """Grading runs at the LAB_FAST size with the local SST-2, as `make test` grades."""
    with lab_environment(sst2_dir):
        yield


@pytest.fixture(scope="session")
def released(tmp_path_factory) -> Path:
    """A release generated now by nbgrader from solutions/, in a temporary course folder."""
    return fresh_release(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="session")
def source():
    return nbformat.read(SOURCE_NOTEBOOK, as_version=4)


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory, released, source, lab_env):
    """Generate the class from the fresh release, grade it once (--jobs 2); return (out_dir, rows by student)."""
    student = nbformat.read(released, as_version=4)
    solutions = solution_sources(source)
    folder = tmp_path_factory.mktemp("submissions")
    write_submission(folder, "perfect", perfect(student, source))
    write_submission(folder, "untouched", student)
    write_submission(folder, "exercises_1_2", answered(student, answers_of_exercises(source, {1, 2})))
    for student_id, cell, (right, wrong), _, exercises, _ in MISTAKES:
        answers = {**answers_of_exercises(source, exercises), cell: _wrong(solutions[cell], right, wrong)}
        write_submission(folder, student_id, answered(student, answers))
    collected = folder / "collected" / "dora" / "dora_lab.ipynb"  # nbgrader's collected layout
    collected.parent.mkdir(parents=True)
    nbformat.write(answered(student, answers_of_exercises(source, {1})), collected)
    (collected.parent / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    filled = answered(student, answers_of_exercises(source, HONEST_ANSWERS))
    for edit in E2E_EDITS:
        write_submission(folder, f"honest_{edit.name}", edit.edit(filled))
    out = tmp_path_factory.mktemp("graded")
    started = time.monotonic()
    path = grade(folder, out, GradingOptions(jobs=2, timeout_cell=300, timeout_submission=900), progress=False)
    print(f"graded {len(list(folder.iterdir()))} submissions in {time.monotonic() - started:.0f} s")
    return out, read_grades(path)


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_perfect_gets_every_autograded_point_and_untouched_none(graded_class, source):
    _, rows = graded_class
    assert float(rows["perfect"]["score"]) == sum(points_by_cell(source).values())
    assert rows["perfect"]["status"] == "ok"
    for number, points in points_by_exercise(source).items():
        assert float(rows["perfect"][f"exercise_{number}"]) == points
    assert float(rows["untouched"]["score"]) == 0 and rows["untouched"]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_partial_submission_scores_exactly_its_exercises(graded_class, source):
    _, rows = graded_class
    by_exercise = points_by_exercise(source)
    assert float(rows["exercises_1_2"]["score"]) == by_exercise[1] + by_exercise[2]


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_nbgraders_collected_layout_is_graded_the_same(graded_class, source):
    out, rows = graded_class
    assert float(rows["collected"]["score"]) == points_by_exercise(source)[1] and rows["collected"]["status"] == "ok"
    kept = out / "course" / "submitted" / "collected" / "dora" / "timestamp.txt"
    assert kept.read_text() == "2026-11-20 10:00:00.000000 UTC"


@pytest.mark.slow
@pytest.mark.grading_e2e
@pytest.mark.parametrize(
    "student_id, cell, change, failed_test, exercises, phrase", MISTAKES, ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_loses_exactly_its_checks_points(graded_class, source, student_id, cell, change, failed_test, exercises, phrase):  # fmt: skip
    out, rows = graded_class
    by_exercise = points_by_exercise(source)
    expected = sum(by_exercise[number] for number in exercises) - points_by_cell(source)[failed_test]
    assert float(rows[student_id]["score"]) == expected
    feedback = html.unescape((out / "feedback" / student_id / "dora_lab.html").read_text())
    assert phrase.lower() in feedback.lower() and "Grader: failed (0 / " in feedback


@pytest.mark.slow
@pytest.mark.grading_e2e
@pytest.mark.parametrize("edit", E2E_EDITS, ids=[edit.name for edit in E2E_EDITS])
def test_an_honestly_edited_notebook_gets_the_score_its_answers_deserve(graded_class, source, edit):
    out, rows = graded_class
    row = rows[f"honest_{edit.name}"]
    assert float(row["score"]) == sum(points_by_exercise(source)[n] for n in HONEST_ANSWERS)
    assert row["status"] == ("repaired: " + "; ".join(edit.notes) if edit.notes else "ok")
    page = html.unescape((out / "feedback" / f"honest_{edit.name}" / "dora_lab.html").read_text())
    tests = [cell for cell in grade_cells(source) if cell.autograded and cell.exercise in HONEST_ANSWERS]
    assert page.count("Grader: passed") == len(tests), "not nbgrader's feedback page with every verdict"


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_an_image_pasted_into_a_written_answer_is_on_the_feedback_page(graded_class):
    out, _ = graded_class
    page = (out / "feedback" / "honest_lab_pasted_image" / "dora_lab.html").read_text()
    assert f"data:image/png;base64,{PASTED_IMAGE}" in page


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_feedback_shows_the_judges_verdicts_and_no_grading_machine_paths(graded_class):
    out, _ = graded_class
    page = html.unescape((out / "feedback" / "perfect" / "dora_lab.html").read_text())
    assert page.count("Grader: passed") == 7 and "Grader: failed" not in page
    # Graded without running the notebook again: the page says so first, and shows no output but the verdicts.
    assert page.index(NOT_RUN_NOTICE) < page.index("Exercise 1") and "SST-2 from" not in page
    for secret in (str(out), str(PROJECT_ROOT), sys.prefix, "/tmp/dora-grading-"):
        assert secret not in page


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_outputs_are_in_place_and_export_rebuilds_the_same_csv(graded_class, tmp_path):
    out, rows = graded_class
    assert (out / "gradebook.db").is_file() and (out / "grading_secret").stat().st_mode & 0o077 == 0
    with open(out / "grades.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:3] == ["student_id", "score", "max_score"] and header[-1] == "status"
    for student_id in rows:
        assert (out / "feedback" / student_id / "dora_lab.html").stat().st_size > 0
    assert write_grades_csv(out, tmp_path / "grades.csv").read_text() == (out / "grades.csv").read_text()


def _sandbox_processes(mine: str) -> list[str]:
    """The grading processes (workers, sandboxes) of one run: those whose command line names `mine`, the run's own
    folder (workers' job files, sandboxes' scratch folders, with TMPDIR inside it), not another test's that grades at
    the same time (the hub test's, under pytest-xdist). Processes inside a sandbox end with it (--die-with-parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            grading = (
                "bwrap" in command or "labhelpers.grading.worker" in command or "labhelpers.probes.runner" in command
            )
            if grading and mine in command:
                found.append(command)
    return found


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_a_stopped_run_resumes_to_the_same_grades(tmp_path, released, source, lab_env, graded_class):
    student = nbformat.read(released, as_version=4)
    folder, out = tmp_path / "submissions", tmp_path / "graded"
    write_submission(folder, "a_exercise_1", answered(student, answers_of_exercises(source, {1})))
    write_submission(folder, "b_exercises_1_2", answered(student, answers_of_exercises(source, {1, 2})))
    write_submission(folder, "c_untouched", student)
    command = [sys.executable, "-m", "labhelpers", "grade", str(folder), "--out", str(out), "--jobs", "1", "--quiet"]
    (tmp_path / "tmp").mkdir()
    environment = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}  # the sandboxes' scratch folders go there
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    results = out / "course" / "results"
    deadline = time.monotonic() + 600
    while not (results.is_dir() and any(results.iterdir())) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    said = run.communicate(timeout=60)[0]
    assert time.monotonic() - stopped < 20, "stopping took too long"
    assert run.returncode != 0 and "Run the same `dora-lab grade` command again" in said
    assert _sandbox_processes(str(tmp_path)) == [], "processes of the stopped run are left"
    partial = read_grades(out / "grades.csv")
    assert 1 <= len(partial) < 3
    finished = {student_id: (results / f"{student_id}.json").stat().st_mtime for student_id in partial}
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    rows = read_grades(out / "grades.csv")
    assert sorted(rows) == ["a_exercise_1", "b_exercises_1_2", "c_untouched"]
    assert all((results / f"{s}.json").stat().st_mtime == t for s, t in finished.items()), (
        "a finished one was regraded"
    )
    by_exercise = points_by_exercise(source)
    assert [float(rows[s]["score"]) for s in sorted(rows)] == [by_exercise[1], by_exercise[1] + by_exercise[2], 0]
    assert rows["b_exercises_1_2"]["score"] == graded_class[1]["exercises_1_2"]["score"]  # --jobs 1 as --jobs 2
    _targeted_regrades_touch_no_one_else(command, out, rows)


def _targeted_regrades_touch_no_one_else(command: list[str], out: Path, rows: dict) -> None:
    """Regrade one test of one student (--only), then one student whole (--student): only theirs changes."""
    results = out / "course" / "results"
    command = [*command, "--course", str(out / "course")]  # the source as graded (the graded copy keeps it)
    one_test = ["--student", "b_exercises_1_2", "--only", "dora_linear_matches_peft"]
    for extra, student, phases in [
        (one_test, "b_exercises_1_2", {"probes", "judge", "feedback"}),
        (["--student", "c_untouched"], "c_untouched", {"notebook", "probes", "judge", "feedback"}),
    ]:
        graded = {s: (results / f"{s}.json").stat().st_mtime for s in rows}
        ledger = json.loads((out / STATUS_FILE).read_text())
        subprocess.run([*command, *extra], check=True, capture_output=True, text=True, timeout=900)
        assert [s for s in rows if (results / f"{s}.json").stat().st_mtime != graded[s]] == [student]
        now = json.loads((out / STATUS_FILE).read_text())
        assert {s: e for s, e in now.items() if s != student} == {s: e for s, e in ledger.items() if s != student}
        assert read_grades(out / "grades.csv") == rows
        result = json.loads((results / f"{student}.json").read_text())
        assert set(result["phases"]) == phases and len(result["verdicts"]) == 7  # every test's verdict kept
    page = html.unescape((out / "feedback" / "b_exercises_1_2" / "dora_lab.html").read_text())
    assert page.count("Grader: passed") == 2 and page.count("Grader: failed") == 5


def test_the_end_to_end_edits_are_honest_edits():
    assert len(E2E_EDITS) == 10  # a misspelt name would silently drop an edit
    assert {edit.name for edit in E2E_EDITS} == E2E_EDIT_NAMES


# The named mistake the judge recognises in each typical mistake (checks' Mistake.name); the other typical mistakes
# are diagnosed in words without a catalogue name, so the report lists their students under "failed, no named mistake".
NAMED_MISTAKES = {
    "dim0_magnitude": "norm_over_dim0",
    "missing_scaling": "unscaled",
    "no_projection": "never_projects",
    "no_eval_mode": "training_mode",
    "delta_d_over_columns": "direction_over_columns",
}


def _answered(student_id: str) -> tuple[set[int], str | None]:
    """Return the exercises a student of graded_class answered, and the test their typical mistake fails (or None)."""
    mistakes = {m[0]: (m[4], m[3]) for m in MISTAKES}
    fixed = {"perfect": {1, 2, 3, 4, 5}, "untouched": set(), "exercises_1_2": {1, 2}, "collected": {1}}
    if student_id in mistakes:
        return mistakes[student_id]
    return fixed.get(student_id, HONEST_ANSWERS), None


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_the_class_report_counts_each_named_mistake_and_pass_rate_exactly(graded_class, source):
    out, rows = graded_class
    report = json.loads((out / REPORT_JSON).read_text())  # written by `grade` at its end
    assert report == json.loads(json.dumps(dataclasses.asdict(build_report(out))))
    assert report["students"] == len(rows) and report["scores"] == {s: float(r["score"]) for s, r in rows.items()}
    exercise_of = {cell.grade_id: cell.exercise for cell in grade_cells(source) if cell.autograded}
    for test in report["tests"]:
        grade_id = test["grade_id"]
        passes = {s for s in rows if exercise_of[grade_id] in _answered(s)[0] and _answered(s)[1] != grade_id}
        assert (set(test["passed"]), set(test["failed"]), test["not_judged"]) == (passes, set(rows) - passes, [])
        assert test["pass_rate"] == len(passes) / len(rows)
    assert [(m["name"], m["students"], m["count"]) for m in report["mistakes"]] == sorted(
        (name, [student], 1) for student, name in NAMED_MISTAKES.items()
    )
    unnamed = {student: failed for student, _, _, failed, _, _ in MISTAKES if student not in NAMED_MISTAKES}
    by_test = {test["grade_id"]: test for test in report["tests"]}
    assert all(student in by_test[failed]["unexplained"] for student, failed in unnamed.items())
    statuses = {status["kind"]: status["students"] for status in report["statuses"]}
    assert statuses["repaired notebook"] == sorted(f"honest_{edit.name}" for edit in E2E_EDITS if edit.notes)
    phases = {phase["phase"]: phase["submissions"] for phase in report["phases"]}
    assert phases["notebook"] == phases["submission"] == len(rows)  # every submission here was graded by a worker


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.grading_e2e
def test_the_class_report_renders_in_a_browser_with_every_figure(graded_class):
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out, rows = graded_class
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto((out / REPORT_HTML).as_uri())
            expect(page.locator("h1")).to_contain_text(f"class report ({len(rows)} students)")
            sections = {"scores": "Scores", "tests": "Pass rate per test", "mistakes": "Named mistakes"}
            for section, title in {**sections, "statuses": "Statuses", "phases": "Time per grading phase"}.items():
                expect(page.locator(f"section#{section} h2")).to_have_text(title)
            images = page.locator("section img")
            expect(images).to_have_count(4)
            widths = images.evaluate_all("images => images.map(image => image.complete ? image.naturalWidth : 0)")
            assert all(width > 300 for width in widths), widths  # every figure decoded and drawn
            expect(page.locator("section#mistakes")).to_contain_text("never_projects")
            page.screenshot(path=SCREENSHOTS / "report.png", full_page=True)
        finally:
            browser.close()


_VERDICT = re.compile(
    r'<div style="border-left: 4px solid #[0-9a-f]{6}; padding: 4px 10px; margin: 4px 0">.*?</div>', re.S
)
SHARDED = ["untouched", "exercises_1_2", "collected", "missing_scaling"]
"""Students of graded_class graded again as three shards (no training: the test stays near 90 s on 2 cores)."""


def _verdicts(page: Path) -> list[str]:
    """The judge's verdict boxes of a feedback page, in order (the notebook's own outputs hold timings that vary)."""
    return _VERDICT.findall(page.read_text())


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_three_shards_graded_apart_and_merged_give_a_single_runs_grades_and_feedback(graded_class, tmp_path, lab_env):
    out, rows = graded_class
    folder = tmp_path / "submissions"
    for student_id in SHARDED:  # exactly as submitted to the single run (nbgrader's layout and timestamp included)
        submitted = out / "course" / "submitted" / student_id / "dora"
        target = folder / student_id / ("dora" if student_id == "collected" else "")
        target.mkdir(parents=True)
        for name in ("dora_lab.ipynb", "timestamp.txt"):
            if (submitted / name).is_file():
                shutil.copyfile(submitted / name, target / name)
    (folder / "broken").mkdir()
    (folder / "broken" / "dora_lab.ipynb").write_text("{ not a notebook")
    # The single run's settings, and its source notebook as it was graded (the graded copy's course keeps it).
    options = ["--timeout-cell", "300", "--timeout-submission", "900", "--quiet", "--course", str(out / "course")]
    shards = [tmp_path / f"shard{index}" for index in range(3)]
    grade_shard = [sys.executable, "-m", "labhelpers", "grade", str(folder), "--secret", str(out), *options]
    grading = [
        subprocess.Popen(
            [*grade_shard, "--out", str(shard), "--shard", f"{index}/3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for index, shard in enumerate(shards)
    ]
    said = [process.communicate(timeout=900)[0].decode() for process in grading]
    assert [process.returncode for process in grading] == [0, 0, 0], said
    merged = tmp_path / "class"
    command = [sys.executable, "-m", "labhelpers", "merge", *map(str, shards), "--out", str(merged)]
    assert "merged 3 shards (5 students;" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    together = read_grades(merged / "grades.csv")
    assert {s: together[s] for s in SHARDED} == {s: rows[s] for s in SHARDED}
    assert together["broken"]["score"] == "0" and "not a valid notebook" in together["broken"]["status"]
    for student_id in SHARDED:
        single = _verdicts(out / "feedback" / student_id / "dora_lab.html")
        assert _verdicts(merged / "feedback" / student_id / "dora_lab.html") == single and len(single) == 7
    assert json.loads((merged / REPORT_JSON).read_text())["students"] == 5
    # A shard graded with another secret drew other hidden inputs: no merge takes it; nor one with a shard missing.
    (tmp_path / "nobody").mkdir()
    (tmp_path / "other_secret").write_text("0f" * 32)
    other = [sys.executable, "-m", "labhelpers", "grade", str(tmp_path / "nobody"), "--out", str(tmp_path / "other")]
    subprocess.run([*other, "--shard", "2/3", "--secret", str(tmp_path / "other_secret"), *options], check=True)
    first_two = command[:6]
    for given, phrase in [
        ([str(tmp_path / "other")], "each shard needs the same --secret FILE"),
        ([], "shard 2/3 missing"),
    ]:
        refused = subprocess.run([*first_two, *given, "--out", str(tmp_path / "no")], capture_output=True, text=True)
        assert refused.returncode == 1 and phrase in refused.stderr and not (tmp_path / "no").exists()
