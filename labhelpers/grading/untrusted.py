"""Make what a submission wrote inert before any page shows it: the formgrader and the feedback page.

nbgrader's formgrader and feedback pages render Markdown with its raw HTML as written and insert outputs' HTML as it
is; the formgrader serves it from the instructor's Jupyter server, so a `<script>` or an `onerror` in a written answer
would run as the instructor (open the terminal, read the solutions, change grades). Before the autograded notebook
reaches either, every cell the student wrote (answer cells and added cells) has its Markdown rendered by nbconvert's
own renderer and then cleaned by bleach (the allow-list sanitizer nbconvert uses), and every output of the notebook's
run keeps only plain text, raster images and cleaned HTML. A disallowed tag is shown as text (`&lt;script&gt;`), so
a reader sees what was attempted; the verdicts and notices the grader adds are its own and left as they are.
"""

from __future__ import annotations

import bleach
from nbconvert.filters.markdown_mistune import InvalidNotebook, IPythonRenderer, MarkdownWithMath
from nbformat import NotebookNode

TAGS = frozenset(
    {"a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img"}
    | {"li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
)
"""What rendered Markdown may hold (no script, style, iframe, form, object, svg or event attribute)."""
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
"""URL schemes of links and images (data: only for images, see _allowed_attribute)."""
OUTPUT_TYPES = ("text/plain", "text/html", "image/png", "image/jpeg", "image/gif")
"""The output types a page may show (text/html cleaned); the rest (JavaScript, SVG, LaTeX, widgets) are dropped."""
INERT = "dora-lab-inert"
"""Metadata key of a student's Markdown cell already made inert (a regrade leaves it as it is)."""


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """Allow classes (code highlighting) and titles anywhere, no id (a page's own elements keep theirs)."""
    if name in ("class", "title"):
        return True
    if tag == "a":
        return name == "href" and not value.strip().lower().startswith("data:")
    if tag == "img":
        source = value.strip().lower()
        return name == "alt" or (
            name == "src" and (not source.startswith("data:") or source.startswith("data:image/"))
        )
    return tag in ("td", "th") and name == "align"


def clean_html(text: str) -> str:
    """Return `text` with every tag, attribute and URL scheme outside the allow-lists shown as text or removed."""
    return bleach.clean(text, tags=TAGS, attributes=_allowed_attribute, protocols=PROTOCOLS, strip_comments=True)


def inert_markdown(cell: NotebookNode) -> str:
    """Return the cell's Markdown rendered to clean HTML, as Markdown source that renders to the same page.

    Its images (attachments included) are embedded; a blank line would end the HTML block, so each one holds a
    zero-width space instead.
    """
    renderer = IPythonRenderer(
        escape=False, allow_harmful_protocols=False, attachments=cell.get("attachments", {}), exclude_anchor_links=True
    )
    try:
        rendered = MarkdownWithMath(renderer=renderer).render(cell.source)
    except InvalidNotebook:  # an image of a missing attachment: the text, cleaned, is still shown
        rendered = cell.source
    lines = clean_html(rendered).split("\n")
    return "<div>\n" + "\n".join(line if line.strip() else "\u200b" for line in lines) + "\n</div>"


def inert_output(output: NotebookNode) -> None:
    """Keep only the output types a page may show, the HTML cleaned."""
    data = output.get("data")
    if data is None:
        return  # streams and errors: nbconvert escapes their text
    output["data"] = {mime: value for mime, value in data.items() if mime in OUTPUT_TYPES}
    if "text/html" in output["data"]:
        html = output["data"]["text/html"]
        output["data"]["text/html"] = clean_html("".join(html) if isinstance(html, list) else html)


def make_inert(cell: NotebookNode, trusted_output: str) -> None:
    """Make the cell inert: its outputs (but those whose metadata holds `trusted_output`, the grader's own), and its
    Markdown when the student wrote it (an answer cell, or a cell added without nbgrader metadata)."""
    for output in cell.get("outputs", []):
        if not output.get("metadata", {}).get(trusted_output):
            inert_output(output)
    nbgrader = cell.metadata.get("nbgrader")
    written = nbgrader is None or bool(nbgrader.get("solution"))
    if cell.cell_type == "markdown" and written and not cell.metadata.get(INERT):
        cell.source = inert_markdown(cell)
        cell.metadata[INERT] = True
