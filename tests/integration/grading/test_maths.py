"""A feedback page nbgrader generates shows its maths typeset with the network off, and loads nothing from a CDN.

The page is nbgrader's own: the course the grader prepares, the released notebook submitted as it is and autograded
without running it (the maths is in its markdown), then generate_feedback with the course's settings. Headless
Chromium opens it offline; every markdown cell that had LaTeX must show MathML boxes and no `$` left.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.course import course_config, nbgrader_api, prepare_course, venv_bin_on_path
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser]

SCREENSHOT = PROJECT_ROOT / "outputs" / "screenshots" / "feedback_maths_offline.png"
LOADS_FROM_NETWORK = re.compile(
    r"""<(?:script|img|link|iframe|source|embed|object|audio|video)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""",
    re.IGNORECASE,
)
TEX = re.compile(r"\$[^$]+\$|\\\(|\\\[|\\begin\{")


@pytest.fixture(scope="module")
def feedback_page(tmp_path_factory):
    """Return the feedback page nbgrader generates for the released notebook, submitted untouched."""
    from nbgrader.preprocessors import CheckCellMetadata, SaveAutoGrades

    venv_bin_on_path()
    course, db_path = prepare_course(tmp_path_factory.mktemp("graded"), SOURCE_NOTEBOOK)
    submitted = course / "submitted" / "ana" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    submitted.parent.mkdir(parents=True)
    shutil.copyfile(course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", submitted)
    config = course_config(course, db_path)
    config.CourseDirectory.submitted_directory = "submitted"
    config.Autograde.autograde_preprocessors = [SaveAutoGrades, CheckCellMetadata]  # scores only: nothing runs
    api = nbgrader_api(config)
    for step in (api.autograde(ASSIGNMENT, "ana", force=True, create=True), api.generate_feedback(ASSIGNMENT, "ana")):
        assert step["success"], step.get("error") or step.get("log")
    return course / "feedback" / "ana" / ASSIGNMENT / f"{NOTEBOOK}.html"


def test_the_feedback_page_loads_nothing_from_the_network(feedback_page):
    """Links a student may follow (`<a href>`) are fine; nothing the page fetches by itself may leave the machine."""
    page = feedback_page.read_text()
    assert not LOADS_FROM_NETWORK.findall(page)
    assert re.findall(r"""<a\s[^>]*href="https://""", page), "the notebook's reading links should survive"
    assert "cdnjs" not in page and "MathJax" not in page


def test_the_feedback_page_shows_typeset_maths_offline(feedback_page):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} not found: install Debian's package (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not found")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
            page = context.new_page()
            asked = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(feedback_page.as_uri(), wait_until="load")
            cells = page.locator(".text_cell_render")
            texts = cells.all_inner_texts()
            boxes = cells.evaluate_all(
                "cells => cells.map(c => [...c.querySelectorAll('math')].map(m => m.getBoundingClientRect().width))"
            )
            first = page.locator("math[display=block]").first
            first.evaluate("m => m.scrollIntoView({block: 'center'})")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOT)
        finally:
            browser.close()
    assert [url for url in asked if not url.startswith("file:")] == []
    with_maths = [i for i, widths in enumerate(boxes) if widths]
    assert len(with_maths) >= 5, "the lab's markdown has formulas in many cells"
    for i in with_maths:
        assert not TEX.search(texts[i]), f"raw LaTeX left in a cell: {texts[i][:300]}"
        assert all(width > 0 for width in boxes[i]), f"a formula was not laid out: {texts[i][:300]}"
