"""report.html: the class report as one self-contained page (its figures embedded as base64 PNGs, no scripts)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from string import Template

from labhelpers.grading.report import figures
from labhelpers.grading.report.records import ClassReport

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
section { margin-bottom: 2.5em; }
img { max-width: 100%; }
.none { color: #57606a; font-style: italic; }
</style></head>
<body>
<h1>$title</h1>
$body
</body></html>
""")
"""The page: a title and sections (every text in them escaped by the functions below)."""


def _text(value: object) -> str:
    return html.escape(str(value))


def _students(ids: Sequence[str]) -> str:
    """A list of students, folded when long."""
    if not ids:
        return ""
    names = ", ".join(_text(student) for student in ids)
    return names if len(ids) <= 8 else f"<details><summary>{len(ids)} students</summary>{names}</details>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numbers: Sequence[int] = ()) -> str:
    """An HTML table; the cells are HTML already; columns in `numbers` are right-aligned."""
    head = "".join(f"<th>{_text(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=number' * (i in numbers)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(anchor: str, title: str, png: str, content: str) -> str:
    image = f"<img alt='{_text(title)}' src='data:image/png;base64,{png}'>" if png else ""
    return f"<section id='{anchor}'><h2>{_text(title)}</h2>{image}{content}</section>"


def _none(what: str) -> str:
    return f"<p class='none'>{_text(what)}</p>"


def _scores(report: ClassReport) -> str:
    if not report.scores:
        return _section("scores", "Scores", "", _none("no student graded"))
    summary = (
        f"<p>{report.students} students; mean {report.mean_score:g}, median {report.median_score:g}, out of "
        f"{report.max_score:g} points.</p>"
    )
    return _section("scores", "Scores", figures.score_histogram(report), summary)


def _tests(report: ClassReport) -> str:
    rows = [
        (
            _text(t.grade_id), str(t.exercise), f"{t.points:g}", str(len(t.passed)), str(len(t.failed)),
            str(len(t.not_judged)), "—" if t.pass_rate is None else f"{100 * t.pass_rate:.0f} %",
            _students(t.unexplained),
        )
        for t in report.tests
    ]  # fmt: skip
    header = ("test", "exercise", "points", "passed", "failed", "not judged", "pass rate", "failed, no named mistake")
    return _section(
        "tests", "Pass rate per test", figures.pass_rates(report.tests), _table(header, rows, (1, 2, 3, 4, 5, 6))
    )


def _mistakes(report: ClassReport) -> str:
    if not report.mistakes:
        return _section("mistakes", "Named mistakes", "", _none("no named mistake recognised"))
    rows = [
        (
            f"<code>{_text(m.name)}</code>",
            _text(", ".join(m.tests)),
            str(m.count),
            _students(m.students),
            _text(m.example),
        )
        for m in report.mistakes
    ]
    table = _table(("mistake", "tests", "students", "who", "what the judge said (first student)"), rows, (2,))
    return _section("mistakes", "Named mistakes", figures.mistake_counts(report.mistakes), table)


def _statuses(report: ClassReport) -> str:
    if not report.statuses:
        return _section("statuses", "Statuses", "", _none("nothing unusual: every status is ok"))
    rows = [
        (_text(s.kind), str(len(s.students)), _students(s.students),
         "<br>".join(_text(line) for line in s.lines[:10]) + (" …" if len(s.lines) > 10 else ""))
        for s in report.statuses
    ]  # fmt: skip
    return _section("statuses", "Statuses", "", _table(("kind", "students", "who", "status lines"), rows, (1,)))


def _phases(report: ClassReport) -> str:
    if not report.phases:
        return _section("phases", "Time per grading phase", "", _none("no submission graded by a worker"))
    rows = [
        (_text(p.phase), str(p.submissions), f"{p.mean:g}", f"{p.median:g}", f"{p.maximum:g}", f"{p.total:g}")
        for p in report.phases
    ]
    table = _table(("phase", "submissions", "mean (s)", "median (s)", "max (s)", "total (s)"), rows, (1, 2, 3, 4, 5))
    return _section("phases", "Time per grading phase", figures.phase_times(report.phases), table)


def _overrides(report: ClassReport) -> str:
    if not report.overrides:
        return _section("overrides", "Overrides", "", _none("none (OUT_DIR/overrides.csv)"))
    rows = [(_text(o["student"]), _text(o["test"]), f"{o['points']:g}", _text(o["reason"])) for o in report.overrides]
    return _section("overrides", "Overrides", "", _table(("student", "test", "points", "reason"), rows, (2,)))


def render(report: ClassReport, title: str) -> str:
    """Return report.html's text."""
    sections = (_scores, _tests, _mistakes, _statuses, _phases, _overrides)
    return PAGE.substitute(title=_text(title), body="\n".join(section(report) for section in sections))
