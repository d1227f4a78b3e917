"""What a submission wrote is inert on every page that shows it, and still readable."""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbconvert import HTMLExporter

from labhelpers.grading.untrusted import INERT, make_inert

ATTACKS = (
    "<script>document.title = 'pwned'</script>\n\n"
    "<img src=x onerror=\"alert(1)\"> [a link](javascript:alert(2)) <iframe src='https://example.org'></iframe>\n\n"
    '<a href="data:text/html,<script>alert(3)</script>">data</a> <style>body {display: none}</style>'
)
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
ANSWER = (
    "**DoRA** keeps `x < 0` rows and $\\Delta M$ apart.\n\n```python\nif a < b:\n\n    pass\n```\n\n"
    "> quoted\n\n- one\n- two\n\n![plot](attachment:plot.png)\n\n" + ATTACKS
)


def _page(*cells) -> str:
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nbformat.v4.new_notebook(cells=list(cells)))
    return html


def _answer(metadata) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(ANSWER, metadata=metadata)
    cell["attachments"] = {"plot.png": {"image/png": PIXEL}}
    return cell


@pytest.mark.parametrize(
    "metadata",
    [{"nbgrader": {"grade_id": "q3", "solution": True, "grade": True, "points": 2}}, {}],
    ids=["written_answer", "added_cell"],
)
def test_a_students_markdown_runs_nothing_and_reads_the_same(metadata):
    cell = _answer(metadata)
    make_inert(cell, trusted_output="verdict")
    page = _page(cell)
    body = page[page.index("<strong>DoRA</strong>") :]  # after nbconvert's own style sheet
    for live in ("<script>document", "onerror", "javascript:", "<iframe", "<style>body", "data:text/html"):
        assert live not in body
    # What was attempted is shown as text, and the answer itself still renders.
    assert "&lt;script&gt;document.title = 'pwned'&lt;/script&gt;" in page
    assert "<strong>DoRA</strong>" in page and "<code>x &lt; 0</code>" in page and "<li>two</li>" in page
    assert "<blockquote>" in page and f'src="data:image/png;base64,{PIXEL}"' in page
    assert '<span class="k">pass</span>' in page and cell.metadata[INERT]


def test_the_instructors_markdown_is_left_as_it_is_and_a_second_pass_changes_nothing():
    instructor = nbformat.v4.new_markdown_cell(
        "<div style='border: 1px'>Exercise</div>", metadata={"nbgrader": {"grade_id": "intro", "locked": True}}
    )
    kept = copy.deepcopy(instructor)
    make_inert(instructor, trusted_output="verdict")
    assert instructor == kept
    answer = _answer({})
    make_inert(answer, trusted_output="verdict")
    once = copy.deepcopy(answer)
    make_inert(answer, trusted_output="verdict")
    assert answer == once


def test_outputs_keep_text_images_and_clean_html_and_the_graders_own_output():
    outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "<Figure>",
                "text/html": ["<b>ok</b>", "<script>alert(1)</script><img src=x onerror=alert(2)>"],
                "image/png": PIXEL,
                "image/svg+xml": "<svg onload='alert(3)'></svg>",
                "application/javascript": "alert(4)",
                "text/latex": "<script>alert(5)</script>",
            },
        ),
        nbformat.v4.new_output("stream", name="stdout", text="<script>printed</script>"),
        nbformat.v4.new_output("display_data", data={"text/html": "<i onclick='x()'>grader</i>"}, metadata={"v": 1}),
    ]
    cell = nbformat.v4.new_code_cell("show()", outputs=outputs)
    make_inert(cell, trusted_output="v")
    shown, printed, graders = cell.outputs
    assert sorted(shown.data) == ["image/png", "text/html", "text/plain"]
    assert shown.data["text/html"] == '<b>ok</b>&lt;script&gt;alert(1)&lt;/script&gt;<img src="x">'
    assert printed.text == "<script>printed</script>"  # nbconvert escapes streams
    assert graders.data["text/html"] == "<i onclick='x()'>grader</i>"
    page = _page(cell)
    assert "<script>alert" not in page and "onload" not in page and "alert(4)" not in page
