"""`jupyter lab` starts on a loopback port and serves the student notebooks folder through its REST API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from _jupyter import running_lab

from labhelpers.config import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


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
    assert "jupyter-nbgrader" in names, sorted(names)


def test_wrong_token_is_refused(jupyter_lab):
    base, _ = jupyter_lab
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(f"{base}/api/contents", "not-the-token")
    assert info.value.code == 403
