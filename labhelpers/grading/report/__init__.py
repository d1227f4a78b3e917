"""The class report (`dora-lab report OUT_DIR`, and at the end of every `dora-lab grade`): report.html and report.json.

What the class got wrong, at a glance: the score histogram, the pass rate of every test, each mistake the judge
recognised by name with its count and the students who made it, the unusual statuses (repaired notebooks,
time-outs, kills, disagreements with the notebook's own run, grading without a sandbox, overrides) and the workers'
time per grading phase. records.py reads and summarises, figures.py draws, page.py writes the page.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import nbformat

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_DIRECTORY
from labhelpers.grading.report.records import ClassReport, read_verdicts, summarise

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


def build_report(out_dir: Path) -> ClassReport:
    """Summarise the class graded in OUT_DIR (its gradebook, status.json and the workers' result files)."""
    from labhelpers.grading.course import grade_cells, graded_course
    from labhelpers.grading.export import grade_rows
    from labhelpers.grading.ledger import Ledger
    from labhelpers.grading.overrides import read_overrides

    course, _ = graded_course(out_dir)
    cells = grade_cells(nbformat.read(course / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4))
    _, rows = grade_rows(out_dir)
    verdicts = read_verdicts(course, [row["student_id"] for row in rows])
    return summarise(rows, Ledger.read(out_dir), verdicts, cells, read_overrides(out_dir, cells))


def write_report(out_dir: Path, dest: Path | None = None) -> Path:
    """Write report.html and report.json for the class graded in OUT_DIR; return the page's path.

    Args:
        out_dir: the grading folder.
        dest: the folder to write them to (default OUT_DIR).
    """
    from labhelpers.grading.report.page import render

    out_dir = out_dir.resolve()
    dest = dest or out_dir
    dest.mkdir(parents=True, exist_ok=True)
    report = build_report(out_dir)
    (dest / REPORT_JSON).write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False) + "\n")
    page = dest / REPORT_HTML
    page.write_text(render(report, f"{NOTEBOOK}: class report ({report.students} students)"))
    return page


__all__ = ["REPORT_HTML", "REPORT_JSON", "ClassReport", "build_report", "write_report"]
