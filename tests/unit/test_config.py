"""LabConfig reads the LAB_* variables and names the variable in every complaint; resolve_device checks a device."""

from __future__ import annotations

import pytest
import torch

from labhelpers.config import PROJECT_ROOT, LabConfig, resolve_device
from labhelpers.errors import LabConfigError, LabError


def test_defaults_with_an_empty_environment():
    config = LabConfig.from_env({})
    assert (config.fast, config.data_dir, config.output_dir, config.seed, config.model_name) == (
        False,
        None,
        PROJECT_ROOT / "outputs",
        0,
        None,
    )
    assert config.device in {"cpu", "cuda"}


@pytest.mark.parametrize(
    "value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("off", False)]
)
def test_lab_fast_accepts_usual_yes_no_spellings(value, expected):
    assert LabConfig.from_env({"LAB_FAST": value}).fast is expected


@pytest.mark.parametrize("value, expected", [("", True), ("1", True), ("0", False), ("no", False)])
def test_lab_figures_is_on_unless_turned_off(value, expected):
    assert LabConfig.from_env({"LAB_FIGURES": value}).figures is expected
    assert LabConfig.from_env({}).figures is True


def test_setup_says_when_figures_are_not_drawn(capsys, tmp_path):
    from labhelpers.config import setup

    setup(environ={"LAB_FIGURES": "0", "LAB_OUTPUT_DIR": str(tmp_path)})
    assert capsys.readouterr().out.rstrip().endswith("; figures built, not drawn or saved (LAB_FIGURES=0).")
    setup(environ={"LAB_OUTPUT_DIR": str(tmp_path)})
    assert "LAB_FIGURES" not in capsys.readouterr().out


def test_values_are_read(tmp_path):
    config = LabConfig.from_env(
        {
            "LAB_DATA_DIR": str(tmp_path),
            "LAB_OUTPUT_DIR": str(tmp_path / "out"),
            "LAB_SEED": "7",
            "LAB_MODEL": "some/model",
            "LAB_DEVICE": "cpu",
        }
    )
    assert (config.data_dir, config.output_dir, config.seed, config.model_name, config.device) == (
        tmp_path,
        tmp_path / "out",
        7,
        "some/model",
        "cpu",
    )


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"LAB_FAST": "maybe"}, "LAB_FAST='maybe' is not a yes/no value"),
        ({"LAB_SEED": "seven"}, "LAB_SEED='seven' is not an integer"),
        ({"LAB_SEED": "-1"}, "LAB_SEED=-1 is negative"),
        ({"LAB_DATA_DIR": "/no/such/folder"}, "LAB_DATA_DIR='/no/such/folder' is not a folder"),
        ({"LAB_DEVICE": "tpu"}, "LAB_DEVICE='tpu' is not a device"),
        ({"LAB_SIZE": "huge"}, "LAB_SIZE='huge' is not a size: use student"),
        ({"LAB_SIZE": "huge", "LAB_FAST": "1"}, "LAB_SIZE='huge' is not a size"),
    ],
    ids=[
        "fast-not-boolean",
        "seed-not-int",
        "seed-negative",
        "data-dir-missing",
        "device-unknown",
        "size-unknown",
        "size-unknown-even-when-fast",
    ],  # fmt: skip
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(LabConfigError, match=message.replace("(", r"\(")):
        LabConfig.from_env(environ)


def test_output_dir_in_the_home_is_expanded_for_each_user(monkeypatch, tmp_path):
    # A hub sets LAB_OUTPUT_DIR=~/dora-lab-outputs for everyone (deploy/); each server expands it in its own home.
    monkeypatch.setenv("HOME", str(tmp_path))
    config = LabConfig.from_env({"LAB_OUTPUT_DIR": "~/dora-lab-outputs", "LAB_DEVICE": "cpu"})
    assert config.output_dir == tmp_path / "dora-lab-outputs"


def test_output_dir_that_is_a_file_is_rejected(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(LabConfigError, match="LAB_OUTPUT_DIR=.* is a file"):
        LabConfig.from_env({"LAB_OUTPUT_DIR": str(afile)})


def test_setup_seeds_every_generator_and_reports_the_size(capsys, tmp_path):
    import random

    import numpy as np
    import torch

    from labhelpers.config import setup

    config = setup(seed=5, environ={"LAB_FAST": "1", "LAB_OUTPUT_DIR": str(tmp_path)})
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    setup(seed=5, environ={"LAB_FAST": "1", "LAB_OUTPUT_DIR": str(tmp_path)})
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert config.seed == 5 and config.fast
    assert "size fast (LAB_FAST=1 in the environment)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "environ, fast, size, printed",
    [
        ({}, False, "student", "size student (default; setup(fast=True) runs everything in about a minute)"),
        ({}, True, "fast", "size fast (setup(fast=True))"),
        ({"LAB_FAST": "1"}, False, "fast", "size fast (LAB_FAST=1 in the environment)"),
        ({"LAB_FAST": "1"}, True, "fast", "size fast (LAB_FAST=1 in the environment)"),
        ({"LAB_FAST": "0"}, True, "fast", "size fast (setup(fast=True))"),
        ({"LAB_SIZE": "long"}, False, "long", "size long (LAB_SIZE=long in the environment)"),
        ({"LAB_SIZE": "long"}, True, "fast", "size fast (setup(fast=True); LAB_SIZE=long in the environment ignored)"),
        (
            {"LAB_SIZE": "long", "LAB_FAST": "1"},
            False,
            "fast",
            "(LAB_FAST=1 in the environment; LAB_SIZE=long ignored)",
        ),
        ({"LAB_SIZE": "FAST"}, False, "fast", "size fast (LAB_SIZE=fast in the environment)"),
    ],
    ids=[
        "default",
        "notebook-fast",
        "environment-fast",
        "environment-wins",
        "notebook-over-lab-fast-0",
        "long",
        "notebook-fast-over-long",
        "lab-fast-over-long",
        "lab-size-fast",
    ],  # fmt: skip
)
def test_the_size_and_where_it_was_chosen(environ, fast, size, printed, tmp_path, capsys):
    from labhelpers import training
    from labhelpers.config import setup

    config = setup(environ={**environ, "LAB_OUTPUT_DIR": str(tmp_path)}, fast=fast)
    assert (config.size, config.fast) == (size, size == "fast")
    assert printed in capsys.readouterr().out
    assert training.default_settings(config.size) == training.default_settings(size)


def test_a_config_made_fast_says_so_in_both_fields():
    assert LabConfig(fast=True).size == "fast" and LabConfig(size="fast").fast
    with pytest.raises(LabConfigError, match="size='huge'"):
        LabConfig(size="huge")


def test_get_config_reads_the_environment_until_setup_chooses(monkeypatch, tmp_path):
    from labhelpers.config import get_config, setup

    monkeypatch.setenv("LAB_SEED", "7")
    assert get_config().seed == 7
    monkeypatch.setenv("LAB_SEED", "8")
    assert get_config().seed == 8  # no setup() yet: read now
    chosen = setup(seed=3, environ={"LAB_OUTPUT_DIR": str(tmp_path)})
    monkeypatch.setenv("LAB_SEED", "9")
    assert get_config() is chosen and get_config().seed == 3


# ---------------------------------------------------------------------------------------------------------------
# resolve_device


@pytest.mark.parametrize(
    "device, environ",
    [("cpu", {}), (torch.device("cpu"), {}), (None, {"LAB_DEVICE": "cpu"})],
    ids=["name", "torch-device", "lab-device"],
)
def test_resolve_device_returns_the_torch_device_asked_for(device, environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    resolved = resolve_device(device)
    assert isinstance(resolved, torch.device) and resolved == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 0)], ids=["cuda", "cuda:0", "torch-device"])
def test_resolve_device_accepts_a_visible_gpu(device):
    assert resolve_device(device).type == "cuda"


@pytest.mark.parametrize(
    "device, message",
    [("meta", "holds no data"), ("cuda:3", "GPU"), ("nonsense", "not a torch device"), ("tpu", "not a torch device")],
    ids=["meta", "missing-gpu", "unknown", "tpu"],
)
def test_resolve_device_explains_unusable_devices(device, message):
    if device.startswith("cuda") and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(LabConfigError, match=message):
        resolve_device(device)


def test_resolve_device_errors_are_lab_errors():
    with pytest.raises(LabError):
        resolve_device("meta")


def test_device_defaults_to_lab_device(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("LAB_DEVICE", "cuda")
        with pytest.raises(LabConfigError, match="LAB_DEVICE=cpu"):
            resolve_device()
