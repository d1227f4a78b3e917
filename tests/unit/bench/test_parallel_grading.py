"""labhelpers.bench.parallel_grading: the serial and parallel runs compared, with `grade` itself replaced.

Grading a real class takes minutes (`make bench-grading`); here `grade` writes a grades.csv and a status.json as the
grader does, so that what is measured and printed can be checked in a second.
"""

from __future__ import annotations

import json
import re

import pytest

from labhelpers import grading
from labhelpers.bench import parallel_grading

STUDENTS = ["complete_00", "exercises_1_2_01", "untouched_02"]


@pytest.fixture
def fake_class(monkeypatch):
    """Replace the class and the grader: each run writes STUDENTS' rows, the --jobs 3 run a different grade."""
    calls = []

    def make_class(folder, source_path, students, cycle):
        (folder / "submissions").mkdir(parents=True)

    def grade(submissions, out, options, source_notebook, progress):
        calls.append((options.jobs, source_notebook, progress))
        out.mkdir(parents=True)
        statuses = {
            student: {"seconds": 2.0, "phases": {"notebook": 1.0, "probes": 0.5, "judge": 0.25, "feedback": 0.25}}
            for student in STUDENTS
        }
        (out / "status.json").write_text(json.dumps(statuses))
        score = 9 if options.jobs == 3 else 10
        rows = "".join(f"{student},{score}\n" for student in STUDENTS)
        (out / "grades.csv").write_text("student_id,score\n" + rows)
        return out / "grades.csv"

    monkeypatch.setattr(parallel_grading, "make_class", make_class)
    monkeypatch.setattr(grading, "grade", grade)
    return calls


def test_both_runs_grade_the_same_class_and_report_identical_grades(fake_class, capsys, tmp_path):
    options = parallel_grading.GradingBenchOptions(students=3, jobs=2, source=tmp_path / "source.ipynb")
    result = parallel_grading.bench_grading(options)
    assert fake_class == [(1, options.source, False), (2, options.source, False)]
    assert result.identical and result.serial_s > 0 and result.parallel_s > 0
    printed = capsys.readouterr().out
    assert "serial run, per submission (median over each kind):" in printed
    assert "  complete         2.0 s in the worker (notebook 1.0, probes 0.5, judge 0.2, feedback 0.2)" in printed
    assert "--jobs 2, per submission (median over each kind):" in printed
    # with 2 workers at once, a submission's 2.0 worker seconds are 1.0 s of the run, plus its share of the set-up
    assert re.search(
        r"--jobs 2, per submission.*\n.*\n  complete +2\.0 s in the worker .*its share of the run +1\.\d s", printed
    )
    assert "ratio --jobs 2 / serial: " in printed and printed.endswith("grades identical: yes\n")


def test_different_grades_are_reported_row_by_row(fake_class, capsys):
    result = parallel_grading.bench_grading(parallel_grading.GradingBenchOptions(students=3, jobs=3))
    assert not result.identical
    printed = capsys.readouterr().out
    assert "grades identical: NO" in printed
    assert "serial only:  \n  complete_00,10" in printed and "--jobs 3 only:\n  complete_00,9" in printed
