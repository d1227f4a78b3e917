"""SandboxedExecute's configuration: one notebook's execution travels in nbgrader's configuration, its kernel
manager gets the execution's sandbox, and its events collect in the execution's record."""

from __future__ import annotations

import copy

import pytest
from nbformat.v4 import new_notebook
from traitlets.config import Config

from labhelpers.grading.sandbox.command import HOME, Limits, Sandbox
from labhelpers.grading.sandbox.execute import NotebookExecution, SandboxedExecute, configure_execution
from labhelpers.grading.sandbox.kernel import SandboxKernelManager


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    return Sandbox(tmp_path / "home", "notebook", None, Limits(), {"HOME": HOME}, (), "/usr/bin/bwrap")


def test_configure_execution_gives_the_preprocessor_the_record_itself(sandbox):
    config = Config()
    execution = configure_execution(config, sandbox)
    # nbgrader's converters deep-copy their configuration, traitlets each configured value: the record stays one.
    executor = SandboxedExecute(config=copy.deepcopy(config))
    assert executor.execution is execution and executor.events is execution.events
    executor.events.append("time-out (4 s) in cell answer")
    assert execution.events == ["time-out (4 s) in cell answer"]


def test_each_execution_collects_its_own_events(sandbox):
    config = Config()
    first = configure_execution(config, sandbox)
    SandboxedExecute(config=config).events.append("output truncated in cell answer")
    second = configure_execution(config, sandbox)
    assert (first.events, second.events) == (["output truncated in cell answer"], [])
    assert SandboxedExecute(config=config).events is second.events


def test_the_kernel_manager_runs_in_the_executions_sandbox(sandbox):
    config = Config()
    configure_execution(config, sandbox)
    executor = SandboxedExecute(config=config)
    executor.nb = new_notebook()
    manager = executor.create_kernel_manager()
    assert isinstance(manager, SandboxKernelManager) and manager.sandbox is sandbox


def test_without_an_execution_no_kernel_is_made():
    executor = SandboxedExecute()
    executor.nb = new_notebook()
    with pytest.raises(RuntimeError, match="SandboxedExecute has no sandbox"):
        executor.create_kernel_manager()


def test_a_record_is_never_copied(sandbox):
    execution = NotebookExecution(sandbox)
    assert copy.deepcopy(execution) is execution
