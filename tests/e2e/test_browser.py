"""A student's path through the lab in a real browser: JupyterLab in headless Chromium, driven with Playwright.

Opens the released notebook, runs the cells above Exercise 1, types an answer into the `decompose_weight` cell as a
student would, runs the check cell below it and reads what the student reads. Needs Debian's /usr/bin/chromium (no
browser downloads): skipped without it, except when $CI is set, where a missing browser fails.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from labhelpers.config import PROJECT_ROOT
from tests.support.jupyter import running_lab

# The three tests share one server, browser and kernel: keep them on one xdist worker.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = PROJECT_ROOT / "notebooks"
NOTEBOOK = "dora/dora_lab.ipynb"
SCREENSHOTS = PROJECT_ROOT / "outputs" / "screenshots"
# Debian's Chromium, as root in a container: no sandbox, no GPU, nothing fetched from the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
KERNEL_TIMEOUT_MS = 120_000
KERNEL_IDLE = re.compile(r"Python 3 \(ipykernel\) \| Idle")

# What a student types: a right answer, and the usual slip of reading the paper's (in, out) axis on nn.Linear's weight.
CORRECT_ANSWER = """def decompose_weight(W):
    magnitude = W.norm(dim=1, keepdim=True)
    direction = W / magnitude.clamp_min(1e-12)
    return magnitude, direction
"""
WRONG_AXIS_ANSWER = CORRECT_ANSWER.replace("dim=1", "dim=0")

# Tracebacks and stream writes to stderr share this mime type; an exception is told apart by its `XxxError` line.
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
EXCEPTION = re.compile(r"^\w*(Error|Exception)\b", re.MULTILINE)


def exceptions(cell) -> list[str]:
    """The tracebacks shown in `cell`'s output area."""
    return [text for text in cell.locator(STDERR).all_inner_texts() if EXCEPTION.search(text)]


def code_cell(page, text: str):
    """The notebook's one code cell whose source contains `text` (found by content, never by index)."""
    from playwright.sync_api import expect

    cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has=page.locator(".cm-content", has_text=text))
    # Editors fill in after the notebook appears: wait for the cell rather than count at once.
    expect(cell, f"one code cell containing {text!r}").to_have_count(1, timeout=30_000)
    return cell


def code_cells_above(page, cell) -> list:
    """The code cells above `cell`, top to bottom."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    index = cells.evaluate_all("(cells, target) => cells.indexOf(target)", cell.element_handle())
    kinds = cells.evaluate_all("cells => cells.map(c => c.classList.contains('jp-CodeCell'))")
    return [cells.nth(i) for i in range(index) if kinds[i]]


def run(page, cell) -> None:
    """Run `cell` with Shift+Enter, as a student does, and wait for its new execution count."""
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text().strip()
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "([prompt, before]) => /^\\[\\d+\\]:$/.test(prompt.textContent.trim()) && prompt.textContent.trim() !== before",
        arg=[prompt.element_handle(), before],
        timeout=KERNEL_TIMEOUT_MS,
    )


def answer_exercise_1(page, code: str):
    """Type `code` over the decompose_weight cell, run it, then run its check cell; return the check cell."""
    stub = code_cell(page, "def decompose_weight")
    stub.locator(".cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    # insert_text sends the text as one input event: CodeMirror neither re-indents it nor closes brackets.
    page.keyboard.insert_text(code)
    assert stub.locator(".cm-content").inner_text().strip() == code.strip(), "the cell does not hold what was typed"
    run(page, stub)
    assert not exceptions(stub), exceptions(stub)
    check = code_cell(page, "check_decompose_weight(decompose_weight)")
    run(page, check)
    # Frame the screenshot as the student sees it: their answer at the top, the check's output below it, and the
    # end of a long traceback (the message) in view.
    stub.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    check.evaluate("cell => cell.getBoundingClientRect().bottom > innerHeight && cell.scrollIntoView({block: 'end'})")
    return check


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        print(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    """A real `jupyter lab` on 127.0.0.1 rooted at a copy of notebooks/; yields the student notebook's URL and token."""
    if not (NOTEBOOKS / NOTEBOOK).is_file():
        pytest.fail(f"{NOTEBOOKS / NOTEBOOK} not found: generate the student notebooks with `make release`")
    tmp = tmp_path_factory.mktemp("browser")
    shutil.copytree(NOTEBOOKS, tmp / "notebooks")
    # Fresh user settings, and no prompt to fetch Jupyter news over the notebook.
    notification = (
        tmp / "jupyter" / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    with running_lab(tmp / "notebooks", tmp, extra_env={"LAB_OUTPUT_DIR": str(tmp / "outputs")}) as (base, token):
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}"


@pytest.fixture(scope="module")
def notebook(chromium, lab_url, tmp_path_factory):
    """The student notebook open in JupyterLab, its kernel idle and the cells above Exercise 1 run; yields the page."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1200},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(lab_url)
            # The status bar names the kernel once it is connected (the toolbar reads "idle" before a kernel exists).
            expect(page.locator("#jp-main-statusbar")).to_contain_text(KERNEL_IDLE, timeout=KERNEL_TIMEOUT_MS)
            # The student's first step: run the imports and setup above Exercise 1, cell by cell.
            stub = code_cell(page, "def decompose_weight")
            setup = code_cells_above(page, stub)
            assert setup, "no code cell above Exercise 1: where are the notebook's imports?"
            for cell in setup:
                run(page, cell)
                assert not exceptions(cell), "a cell above Exercise 1 failed:\n" + "\n".join(exceptions(cell))
            yield page
        finally:
            context.close()


def test_correct_decompose_weight_passes_its_check(notebook):
    check = answer_exercise_1(notebook, CORRECT_ANSWER)
    notebook.screenshot(path=SCREENSHOTS / "decompose_weight_passed.png")
    output = check.locator(".jp-OutputArea").inner_text()
    assert not exceptions(check), output
    assert re.search(r"^✔ decompose_weight passed", output, re.MULTILINE), output


def test_magnitude_over_the_wrong_axis_gets_guidance(notebook):
    check = answer_exercise_1(notebook, WRONG_AXIS_ANSWER)
    notebook.screenshot(path=SCREENSHOTS / "decompose_weight_wrong_axis.png")
    output = check.locator(".jp-OutputArea").inner_text()
    assert not re.search(r"^✔", output, re.MULTILINE), output
    # The traceback quotes the check's source; what the student is told is its last AssertionError line(s).
    traceback = "\n".join(exceptions(check))
    assert "AssertionError:" in traceback, output
    message = traceback[traceback.rindex("AssertionError:") :]
    assert "one magnitude per output feature" in message and "which axis" in message, message


def test_nbgrader_shows_the_students_tools_only(notebook):
    """Validate and the Assignments tab; not the instructor's Formgrader, Course List or Create Assignment."""
    from playwright.sync_api import expect

    validate = notebook.locator(".jp-NotebookPanel-toolbar .validate-button")
    expect(validate).to_be_visible()
    expect(validate).to_have_text("Validate")
    notebook.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
    menu = notebook.locator(".lm-Menu:visible")
    expect(menu.locator(".lm-Menu-item", has_text="Assignment List")).to_be_visible()
    notebook.screenshot(path=SCREENSHOTS / "nbgrader_menu.png")
    items = menu.locator(".lm-Menu-itemLabel").all_inner_texts()
    notebook.keyboard.press("Escape")
    assert "Formgrader" not in items and "Course List" not in items, items
    # nbgrader's Create Assignment panel (its id as nbgrader spells it) and its tab in the right sidebar.
    expect(notebook.locator("#nbgrader-create_assignemnt")).to_have_count(0)
    tabs = notebook.locator(".jp-SideBar .lm-TabBar-tab").evaluate_all(
        "tabs => tabs.map(tab => (tab.getAttribute('title') || '') + ' ' + tab.textContent)"
    )
    assert not [tab for tab in tabs if "Create Assignment" in tab], tabs
