"""Feedback pages' maths as MathML: each way of writing a formula, a formula that cannot be read, and no MathJax."""

from __future__ import annotations

import re

import nbformat
import pytest

from labhelpers.grading.maths import FeedbackExporter, to_mathml

# (name, markdown, fragments of the rendered HTML)
FORMULAS = [
    ("inline $...$", "a norm $\\lVert W \\rVert_c$ here", ['display="inline"', "<mo>&#x02016;</mo><mi>W</mi><msub>"]),
    ("display $$...$$", "$$ W' = m \\frac{V}{\\lVert V \\rVert_c} $$", ['display="block"', "<mfrac>"]),
    ("inline \\(...\\)", "so \\\\(x^2\\\\) grows", ['display="inline"', "<msup><mi>x</mi><mn>2</mn></msup>"]),
    ("display \\[...\\]", "\\\\[ \\sum_i a_i \\\\]", ['display="block"', "&#x02211;"]),
    ("an environment", "\\begin{matrix} a & b \\\\ c & d \\end{matrix}", ['display="block"', "<mtable"]),
    ("text mode's escapes", "$s = \\frac{\\texttt{lora\\_alpha}}{r}$", [">lora_alpha</mtext>"]),
    ("a formula that cannot be read", "then $a^$ broke", ["<code class='tex-source'>$a^$</code>"]),
    ("a lone dollar is text", "it costs $5 a month", ["it costs $5 a month"]),
]


@pytest.mark.parametrize("markdown, fragments", [c[1:] for c in FORMULAS], ids=[c[0] for c in FORMULAS])
def test_each_way_of_writing_a_formula_becomes_mathml(markdown, fragments):
    rendered = FeedbackExporter().markdown2html({"cell": {}}, markdown)
    for fragment in fragments:
        assert fragment in rendered, rendered
    assert not re.search(r"\$[^$\s]", rendered.replace("$a^$", "").replace("$5", ""))  # no TeX left for a script


def test_an_unreadable_formula_shows_its_source_instead_of_failing():
    assert to_mathml("\\left( x", display=True) == "<code class='tex-source'>$$\\left( x$$</code>"


def test_the_page_loads_no_mathjax_and_shows_latex_outputs_as_mathml():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("The magnitude $m = \\lVert W \\rVert_c$."),
            nbformat.v4.new_code_cell(
                "display(Math(...))",
                outputs=[
                    nbformat.v4.new_output("display_data", data={"text/latex": "$$\\alpha^2$$", "text/plain": "a"})
                ],
            ),
        ]
    )
    for template in ("lab", "classic"):  # nbgrader's feedback template extends classic
        page, _ = FeedbackExporter(template_name=template).from_notebook_node(notebook)
        assert "MathJax.Hub" not in page and "mathjax" not in " ".join(re.findall(r"<script[^>]*>", page)).lower()
        assert page.count("<math") == 2 and "<mi>α</mi>" in page, template
