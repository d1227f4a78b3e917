"""`jupyter lab` starts on a loopback port, serves the student notebooks folder through its REST API, runs offline and
shows the student's tools only.

The settings come from `jupyter/`, installed into .venv by `make venv` (deploy/install-jupyter-settings, the same step
a hub's environment gets): JupyterLab's setting overrides and LabApp's config (no news feed, no update checks), and
nbgrader's instructor tools off (the Formgrader, Course List and Create Assignment plugins, the formgrader and course
list server extensions).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labhelpers.config import PROJECT_ROOT
from tests.support.jupyter import PAGE_CONFIG, NbgraderTools, free_port, running_lab, token_getter

NOTEBOOKS = PROJECT_ROOT / "notebooks"
SETTINGS_SOURCE = PROJECT_ROOT / "jupyter"
# jupyter/ mirrors the environment: each file is installed at the same path under the prefix, where a JupyterLab
# started from this environment (make lab, a hub's single-user servers) reads it (`jupyter --paths`).
INSTALLED_SETTINGS = {
    str(path.relative_to(SETTINGS_SOURCE)): Path(sys.prefix) / path.relative_to(SETTINGS_SOURCE)
    for path in sorted(SETTINGS_SOURCE.rglob("*"))
    if path.is_file()
}
LAB_CONFIG = "etc/jupyter/jupyter_lab_config.json"
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _page_config(base: str, token: str) -> dict:
    """The page config JupyterLab's server embeds in /lab for the frontend."""
    request = urllib.request.Request(f"{base}/lab", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(PAGE_CONFIG.search(response.read().decode()).group(1))


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A real JupyterLab server on 127.0.0.1 rooted at the project's notebooks/; yields (base_url, token)."""
    with running_lab(NOTEBOOKS, tmp_path_factory.mktemp("jupyter-lab")) as server:
        yield server


def test_server_serves_the_student_notebooks(jupyter_lab):
    base, token = jupyter_lab
    root = _get(f"{base}/api/contents", token)
    assert root["type"] == "directory"
    expected = sorted(p.name for p in NOTEBOOKS.iterdir() if not p.name.startswith("."))
    assert sorted(item["name"] for item in root["content"]) == expected
    notebook = _get(f"{base}/api/contents/dora/dora_lab.ipynb", token)
    assert notebook["type"] == "notebook" and notebook["content"]["cells"]


def test_lab_ui_and_nbgrader_extension_are_installed(jupyter_lab):
    base, token = jupyter_lab
    request = urllib.request.Request(f"{base}/lab", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and "JupyterLab" in response.read().decode()
    extensions = _get(f"{base}/lab/api/extensions", token)
    names = {ext["name"] for ext in extensions}
    assert "@jupyter/nbgrader" in names, sorted(names)


def test_students_get_the_assignments_tab_and_validate_but_no_instructor_tools(jupyter_lab):
    base, token = jupyter_lab
    tools = NbgraderTools.of(token_getter(base, token))
    assert tools.students_only, tools
    # The extension itself stays: its student plugins (assignment list, validate, menu) need it.
    assert "@jupyter/nbgrader" in {extension["name"] for extension in _get(f"{base}/lab/api/extensions", token)}


def test_wrong_token_is_refused(jupyter_lab):
    base, _ = jupyter_lab
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(f"{base}/api/contents", "not-the-token")
    assert info.value.code == 403


@pytest.mark.parametrize("name", sorted(INSTALLED_SETTINGS))
def test_the_environment_holds_the_offline_settings(name):
    installed = INSTALLED_SETTINGS[name]
    assert installed.is_file(), f"{installed} is missing: run `make venv` to install the settings from jupyter/."
    assert installed.read_bytes() == (SETTINGS_SOURCE / name).read_bytes(), (
        f"{installed} differs from jupyter/{name}: run `make venv` to install the current settings."
    )


def test_frontend_neither_asks_for_news_nor_checks_for_updates(jupyter_lab):
    """The settings API serves the notification plugin with our defaults, and the student's own settings are empty."""
    base, token = jupyter_lab
    plugin = _get(f"{base}/lab/api/settings/{NOTIFICATION_PLUGIN}", token)
    defaults = {name: spec["default"] for name, spec in plugin["schema"]["properties"].items()}
    # fetchNews "none" (JupyterLab's default) asks every student whether to fetch the news; "false" is Never.
    assert defaults["fetchNews"] == "false", defaults
    assert defaults["checkForUpdates"] is False, defaults
    assert plugin["settings"] == {}, "a fresh user has no settings of their own"


def test_server_has_news_off_and_never_checks_for_updates(jupyter_lab):
    from jupyterlab.handlers.announcements import NeverCheckForUpdate
    from traitlets.utils.importstring import import_item

    base, token = jupyter_lab
    # LabApp.news_url = None (from jupyter_lab_config.json) turns the news feed off in the page config.
    assert _page_config(base, token)["news"] == {"disabled": True}
    assert _get(f"{base}/lab/api/news", token) == {"news": []}
    config = json.loads(INSTALLED_SETTINGS[LAB_CONFIG].read_text())
    assert import_item(config["LabApp"]["check_for_updates_class"]) is NeverCheckForUpdate
    assert _get(f"{base}/lab/api/update", token) == {"notification": None}
    # The extension manager neither searches PyPI nor installs into the shared environment.
    assert _page_config(base, token)["extensionManager"]["can_install"] is False


def test_make_lab_starts_jupyterlab_with_the_students_tools_only_as_root_too(tmp_path):
    """`make lab` opens JupyterLab on notebooks/ without nbgrader's instructor tools; as root it adds --allow-root."""
    port, token = free_port(), "make-lab-test-token"
    env = {
        **os.environ,
        "JUPYTER_TOKEN": token,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "BROWSER": "true",  # webbrowser's command: open nothing
    }
    log_path = tmp_path / "make-lab.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        # A session of its own, so that the whole process group (make and jupyter) can be stopped afterwards.
        make = subprocess.Popen(
            ["make", "--no-print-directory", "lab", f"JUPYTER_PORT={port}"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    contents = _get(f"{base}/api/contents", token)
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if make.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"`make lab` did not start JupyterLab:\n{log_path.read_text()}")
                    time.sleep(0.5)
            assert "dora" in {item["name"] for item in contents["content"]}
            tools = NbgraderTools.of(token_getter(base, token))
            assert tools.students_only, tools
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            try:
                make.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
    output = log_path.read_text()
    said_so = "Running as root: starting JupyterLab with --allow-root." in output
    assert said_so == (os.geteuid() == 0), output
