"""pyproject.toml and environment.yml describe the same environment, and the pins are what is installed."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest
import yaml

from labhelpers.config import PROJECT_ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def _pins(requirements) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement.strip())
        assert match, f"{requirement!r} is not an exact pin (name==version)"
        pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


@pytest.fixture(scope="module")
def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return _pins(project["dependencies"] + extras["test"] + extras["hub"])


@pytest.fixture(scope="module")
def conda_env() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())


def test_environment_yml_pins_the_same_packages_and_versions(pyproject_pins, conda_env):
    pip_section = next(d["pip"] for d in conda_env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == pyproject_pins


def test_environment_yml_takes_python_311_from_conda(conda_env):
    assert "python=3.11" in conda_env["dependencies"]


@pytest.mark.parametrize(
    "package, expected",
    [("torch", "2.13.0"), ("peft", "0.21."), ("transformers", "5."), ("jupyterlab", "4."), ("nbgrader", "0.9.")],
)
def test_key_versions_are_pinned_as_the_lab_requires(pyproject_pins, package, expected):
    assert pyproject_pins[package].startswith(expected)


def test_installed_versions_match_the_pins(pyproject_pins):
    wrong = {
        name: (pin, version(name))
        for name, pin in pyproject_pins.items()
        # torch's CPU wheel reports a local version label: 2.13.0+cpu satisfies ==2.13.0.
        if version(name).split("+")[0] != pin
    }
    assert not wrong, (
        f"installed versions differ from pyproject.toml (pin, installed): {wrong}; run `make test` to rebuild .venv"
    )
