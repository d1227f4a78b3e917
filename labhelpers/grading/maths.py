"""Feedback pages whose maths is typeset offline: LaTeX becomes MathML when the page is written, and no script runs.

nbgrader's GenerateFeedback writes each page with nbconvert's HTMLExporter, whose templates load MathJax from a CDN:
a classroom without the internet sees raw ``$...$``. FeedbackExporter is that exporter with two changes. Its markdown
renderer (nbconvert's own, which already finds ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` and
``\\begin{env}``) writes each formula as MathML with latex2mathml, which browsers display natively (MathML Core), so
the page needs no network and no script, also where a viewer blocks scripts. The templates' MathJax macro writes
nothing. ``text/latex`` outputs get the same MathML as their HTML. A formula latex2mathml cannot read is shown as its
source, in code font, rather than failing the page.
"""

from __future__ import annotations

import copy
import html
import re
from typing import Any

from jinja2 import DictLoader, pass_context
from latex2mathml.converter import convert
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from traitlets import default

_TEXT_ESCAPE = re.compile(r"\\([_%&$#{}])")
NO_MATHJAX = "{%- macro mathjax(url='') -%}{%- endmacro %}"
"""nbconvert's `mathjax.html.j2` in its place: the macro every HTML template calls, writing nothing."""


def to_mathml(tex: str, display: bool) -> str:
    """Return the MathML of a LaTeX formula, or its source in code font when latex2mathml cannot read it.

    Args:
        tex: the formula without its delimiters ("\\frac{a}{b}").
        display: a display formula (its own centred line) rather than one inside the text.
    """
    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception:  # a student's formula with a typo must not cost the page: show what was written
        delimiter = "$$" if display else "$"
        return f"<code class='tex-source'>{html.escape(delimiter + tex + delimiter)}</code>"
    # latex2mathml keeps text mode's escapes (\texttt{lora\_alpha} gives "lora\_alpha"); TeX prints the character.
    return _TEXT_ESCAPE.sub(r"\1", mathml)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer, writing each formula as MathML instead of leaving it for MathJax."""

    def block_math(self, body: str) -> str:
        return to_mathml(body, display=True)

    def inline_math(self, body: str) -> str:
        return to_mathml(body, display=False)

    def latex_environment(self, name: str, body: str) -> str:
        return to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter with the maths written as MathML and no MathJax (GenerateFeedback.exporter_class)."""

    @default("extra_loaders")
    def _without_mathjax(self) -> list:
        # Loaders listed here are searched before the template folders: this `mathjax.html.j2` hides nbconvert's.
        return [DictLoader({"mathjax.html.j2": NO_MATHJAX})]

    @pass_context
    def markdown2html(self, context, source: str) -> str:
        """Render markdown as nbconvert does (attachments, anchors, images), with MathML for the maths."""
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=False,
            attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options,
        )
        return MarkdownWithMath(renderer=renderer).render(source)

    def from_notebook_node(self, nb, resources: dict[str, Any] | None = None, **kw: Any):
        """Export the notebook, each `text/latex` output without HTML shown as its MathML."""
        nb = copy.deepcopy(nb)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "text/latex" in data and "text/html" not in data:
                    data["text/html"] = self.markdown2html({"cell": cell}, data["text/latex"])
        return super().from_notebook_node(nb, resources, **kw)
