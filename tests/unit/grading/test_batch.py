"""The settings of a grading run that its resume key holds."""

from __future__ import annotations

from labhelpers.grading import GradingOptions


def test_the_resume_key_holds_what_changes_a_grade_or_its_feedback_and_not_the_jobs():
    default = GradingOptions().decisive()
    assert GradingOptions(jobs=4).decisive() == default
    changed = [
        GradingOptions(timeout_cell=5),
        GradingOptions(timeout_submission=50),
        GradingOptions(memory_bytes=2**30),
        GradingOptions(sandbox=False),
        GradingOptions(run_notebooks=True),
    ]
    keys = [options.decisive() for options in changed]
    assert default not in keys and len(set(keys)) == len(keys)
    assert "--run-notebooks" in GradingOptions(run_notebooks=True).decisive() and "--run-notebooks" not in default
