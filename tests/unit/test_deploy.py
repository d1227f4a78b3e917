"""deploy/ and jupyter/ agree with each other: the Z2JH files (not run here) say what the tested TLJH files say.

`make test-hub` runs the TLJH files, deploy/install-jupyter-settings and deploy/instructor-jupyter on a real hub; the
Z2JH values and Dockerfile are run by no test, so these checks keep them in step with what is.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from labhelpers.assignment import COURSE_ID
from labhelpers.config import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
SETTINGS = PROJECT_ROOT / "jupyter"
STUDENT_SERVER = SETTINGS / "etc/jupyter/jupyter_server_config.d/nbgrader_student_tools.json"
STUDENT_PAGE = SETTINGS / "etc/jupyter/labconfig/page_config.d/dora-lab.json"
INSTRUCTOR = DEPLOY / "instructor-jupyter"


def _load(path: Path) -> Config:
    """Run a traitlets config file (nbgrader's, JupyterHub's) as its application does; return what it set."""
    config = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: config})
    return config


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())


def _mounts(values: dict) -> dict[str, str]:
    return {mount["name"]: mount["mountPath"] for mount in values["singleuser"]["storage"]["extraVolumeMounts"]}


def test_z2jh_servers_get_the_environment_of_the_tljh_servers(values):
    tljh = _load(DEPLOY / "tljh" / "jupyterhub_config.d" / "dora-lab.py").Spawner.environment.get_value({})
    assert values["singleuser"]["extraEnv"] == tljh


def test_the_exchange_and_the_data_are_where_the_settings_say(values):
    nbgrader = _load(DEPLOY / "nbgrader_config.py")
    assert nbgrader.CourseDirectory.course_id == COURSE_ID
    assert _mounts(values)["nbgrader-exchange"] == nbgrader.Exchange.root
    assert _mounts(values)["sst2"] == values["singleuser"]["extraEnv"]["LAB_DATA_DIR"]


def test_the_z2jh_instructors_pods_get_what_bubblewrap_needs(values):
    (override,) = values["hub"]["config"]["KubeSpawner"]["group_overrides"].values()
    context = override["spawner_override"]["container_security_context"]
    assert context["seccompProfile"] == {"type": "Unconfined"} and context["appArmorProfile"] == {"type": "Unconfined"}
    assert (
        context["procMount"] == "Unmasked" and override["spawner_override"]["extra_pod_config"]["hostUsers"] is False
    )
    assert override["groups"] == list(values["hub"]["config"]["JupyterHub"]["load_groups"])


def test_the_dockerfile_copies_files_that_exist_and_the_wheel_of_this_version():
    dockerfile = (DEPLOY / "z2jh" / "Dockerfile").read_text()
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    sources = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert sources == [f"dist/labhelpers-{version}-py3-none-any.whl", "jupyter", "deploy"], sources
    assert all((PROJECT_ROOT / source).exists() for source in sources[1:])


def test_the_students_server_settings_come_after_nbgraders_own():
    # Jupyter Server merges jupyter_server_config.d/ in name order: the later file wins.
    nbgrader = Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/nbgrader.json"
    assert nbgrader.is_file(), f"{nbgrader}: nbgrader no longer turns its extensions on from there"
    assert sorted([nbgrader.name, STUDENT_SERVER.name])[-1] == STUDENT_SERVER.name


@pytest.mark.parametrize(
    "student, instructor, key",
    [
        (STUDENT_SERVER, INSTRUCTOR / "jupyter_server_config.d/nbgrader_instructor_tools.json", "jpserver_extensions"),
        (STUDENT_PAGE, INSTRUCTOR / "labconfig/page_config.d/nbgrader_instructor_tools.json", "disabledExtensions"),
    ],
    ids=["server_extensions", "lab_plugins"],
)
def test_the_instructors_settings_turn_back_on_exactly_what_the_students_turn_off(student, instructor, key):
    def entries(path: Path) -> dict:
        data = json.loads(path.read_text())
        return data.get("ServerApp", data)[key]

    off = entries(student)
    on = entries(instructor)
    assert set(on) == set(off) and all(re.match(r"^(nbgrader|@jupyter/nbgrader)", name) for name in on)
    # Server extensions: False turns off; lab plugins: disabled True turns off. The instructor's file flips each.
    assert all(on[name] is (not off[name]) for name in on), (off, on)
