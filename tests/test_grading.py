"""Release and grading end to end: nbgrader's release of the real notebook, a sample class graded once, the CLI."""

from __future__ import annotations

import csv
import html
import importlib
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labhelpers.config import PROJECT_ROOT
from labhelpers.grading import GradingOptions, grade, write_grades_csv
from labhelpers.grading.course import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK, release, validate
from labhelpers.grading.samples import (
    answered,
    answers_of_exercises,
    perfect,
    points_by_cell,
    points_by_exercise,
    solution_sources,
    write_submission,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

# Typical mistakes: (student id, answer cell, (wrong text, right text) in the instructor's solution, test cell it
# fails, exercises answered). Only Exercise 4's mistake trains models (grading time).
MISTAKES = [
    ("dim0_magnitude", "decompose_weight", ("dim=0", "dim=1"), "decompose_weight_matches_definition", {1, 2, 3}),
    (
        "missing_scaling",
        "dora_linear",
        ("self.lora_B, 1.0", "self.lora_B, self.scaling"),
        "dora_linear_matches_peft",
        {1, 2, 3},
    ),
    (
        "no_projection",
        "dora_direction_gradient",
        ("if True:", "if detach_norm:"),
        "dora_direction_gradient_matches_autograd",
        {1, 2, 3},
    ),
    (
        "no_eval_mode",
        "training_loop",
        ("    correct = total", "    model.eval()\n    correct = total"),
        "evaluate_accuracy_matches_reference",
        {1, 2, 3, 4},
    ),
    (
        "delta_d_over_columns",
        "magnitude_direction_change",
        ("(W, W0, dim=0)", "(W, W0, dim=1)"),
        "magnitude_direction_change_matches_paper",
        {1, 2, 3, 5},
    ),
]


def _wrong(source: str, right: str, wrong: str) -> str:
    assert right in source, f"the solution no longer contains {right!r}: update MISTAKES"
    return source.replace(right, wrong, 1)


def require_real_notebook() -> None:
    """Skip, saying why, until the instructor notebook and the checks it calls exist."""
    if not SOURCE_NOTEBOOK.is_file():
        pytest.skip(f"{SOURCE_NOTEBOOK.relative_to(PROJECT_ROOT)} does not exist yet")
    try:
        importlib.import_module("labhelpers.checks").check_decompose_weight  # noqa: B018
    except (ImportError, AttributeError):
        pytest.skip("labhelpers.checks does not provide the notebook's check functions yet")


@pytest.fixture(scope="session")
def lab_env(sst2_dir):
    """Grading and validation run the notebook in LAB_FAST mode on the local SST-2."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_FAST", "1")
        patch.setenv("LAB_DATA_DIR", str(sst2_dir))
        patch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        yield


@pytest.fixture(scope="session")
def fresh_release(tmp_path_factory) -> Path:
    """A release generated now by nbgrader from solutions/, in a temporary course folder."""
    require_real_notebook()
    root = tmp_path_factory.mktemp("course")
    target = root / "solutions" / "dora" / "dora_lab.ipynb"
    target.parent.mkdir(parents=True)
    target.write_bytes(SOURCE_NOTEBOOK.read_bytes())
    return release(root)


@pytest.fixture(scope="session")
def source():
    require_real_notebook()
    return nbformat.read(SOURCE_NOTEBOOK, as_version=4)


@pytest.fixture(scope="session")
def sample_class(tmp_path_factory, fresh_release, source, lab_env):
    """Generate a class from the fresh release, grade it once (--jobs 2) and return (out_dir, rows by student)."""
    student = nbformat.read(fresh_release, as_version=4)
    solutions = solution_sources(source)
    folder = tmp_path_factory.mktemp("submissions")
    write_submission(folder, "perfect", perfect(student, source))
    write_submission(folder, "untouched", student)
    write_submission(folder, "exercises_1_2", answered(student, answers_of_exercises(source, {1, 2})))
    for student_id, cell, (wrong, right), _, exercises in MISTAKES:
        answers = {**answers_of_exercises(source, exercises), cell: _wrong(solutions[cell], right, wrong)}
        write_submission(folder, student_id, answered(student, answers))
    out = tmp_path_factory.mktemp("graded")
    path = grade(
        folder, out, GradingOptions(jobs=2, timeout_cell=300, timeout_submission=900), source_notebook=SOURCE_NOTEBOOK
    )
    return out, read_grades(path)


def read_grades(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def test_committed_release_equals_a_fresh_nbgrader_release(fresh_release):
    assert RELEASE_NOTEBOOK.is_file(), "notebooks/dora/dora_lab.ipynb is missing: run `make release` and commit it"
    assert RELEASE_NOTEBOOK.read_bytes() == fresh_release.read_bytes(), (
        "notebooks/dora/dora_lab.ipynb differs from a fresh release of solutions/: run `make release` and commit it"
    )


def test_release_hides_solutions_and_hidden_tests(fresh_release, source):
    released = fresh_release.read_text()
    assert "### BEGIN SOLUTION" not in released and "### BEGIN HIDDEN TESTS" not in released
    assert released.count("raise NotImplementedError()") >= len([c for c in solution_sources(source).values()])
    assert all(not cell.get("outputs") for cell in nbformat.read(fresh_release, as_version=4).cells)


def test_nbgrader_validate_passes_the_solutions(lab_env, source):
    assert validate(SOURCE_NOTEBOOK) == {}


def test_nbgrader_validate_invert_fails_every_test_of_the_release(lab_env, fresh_release):
    # --invert lists the test cells that pass; on the untouched release none may.
    assert validate(fresh_release, invert=True) == {}


@pytest.mark.grading_e2e
def test_perfect_gets_every_autograded_point_and_untouched_none(sample_class, source):
    _, rows = sample_class
    total = sum(points_by_cell(source).values())
    assert float(rows["perfect"]["score"]) == total
    assert rows["perfect"]["status"] == "ok"
    for number, points in points_by_exercise(source).items():
        assert float(rows["perfect"][f"exercise_{number}"]) == points
    assert float(rows["untouched"]["score"]) == 0


@pytest.mark.grading_e2e
def test_partial_submission_scores_exactly_its_exercises(sample_class, source):
    _, rows = sample_class
    by_exercise = points_by_exercise(source)
    expected = by_exercise[1] + by_exercise[2]
    assert 0 < float(rows["exercises_1_2"]["score"]) == expected < sum(by_exercise.values())


@pytest.mark.grading_e2e
@pytest.mark.parametrize("student_id, cell, change, failed_test, exercises", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_loses_exactly_its_checks_points(
    sample_class, source, student_id, cell, change, failed_test, exercises
):
    out, rows = sample_class
    by_exercise = points_by_exercise(source)
    expected = sum(by_exercise[number] for number in exercises) - points_by_cell(source)[failed_test]
    assert float(rows[student_id]["score"]) == expected
    # The feedback shows the check's own message: run the check on the same wrong answer here to know it.
    namespace: dict = {}
    for setup in source.cells[:2]:
        if setup.cell_type == "code":
            exec(setup.source, namespace)
    wrong, right = change
    exec(_wrong(solution_sources(source)[cell], right, wrong), namespace)
    test_source = next(c.source for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == failed_test)
    with pytest.raises(AssertionError) as failure:
        exec(test_source, namespace)
    message = str(failure.value).splitlines()[0]
    feedback = html.unescape((out / "feedback" / student_id / "dora_lab.html").read_text())
    assert message in feedback


@pytest.mark.grading_e2e
def test_outputs_are_in_place(sample_class):
    out, rows = sample_class
    assert (out / "gradebook.db").is_file()
    header = next(csv.reader(open(out / "grades.csv")))
    assert header[:3] == ["student_id", "score", "max_score"] and header[-1] == "status"
    assert any(name.startswith("exercise_") for name in header)
    for student_id in rows:
        assert (out / "feedback" / student_id / "dora_lab.html").stat().st_size > 0


@pytest.mark.grading_e2e
def test_export_rebuilds_the_same_csv_from_the_gradebook(sample_class, tmp_path):
    out, _ = sample_class
    again = write_grades_csv(out, tmp_path / "grades.csv")
    assert again.read_text() == (out / "grades.csv").read_text()


@pytest.mark.grading_e2e
def test_regrading_is_idempotent_and_serial_equals_parallel(tmp_path, fresh_release, source, lab_env):
    student = nbformat.read(fresh_release, as_version=4)
    folder = tmp_path / "submissions"
    write_submission(folder, "untouched", student)
    write_submission(folder, "exercise_1", answered(student, answers_of_exercises(source, {1})))
    (folder / "broken").mkdir()
    (folder / "broken" / "dora_lab.ipynb").write_text("{")
    out = tmp_path / "graded"
    options = GradingOptions(timeout_cell=120, timeout_submission=600)
    first = grade(folder, out, GradingOptions(jobs=2, timeout_cell=120), SOURCE_NOTEBOOK, progress=False).read_text()
    second = grade(folder, out, options, SOURCE_NOTEBOOK, progress=False).read_text()
    assert first == second
    assert float(read_grades(out / "grades.csv")["exercise_1"]["score"]) == points_by_exercise(source)[1]


def test_cli_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "labhelpers", "--help"], capture_output=True, text=True, check=True)
    for command in ("release", "grade", "feedback", "export", "status"):
        assert command in result.stdout
