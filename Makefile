# DoRA Lab. Two commands for everyone: `make lab` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# The environment is rebuilt whenever pyproject.toml changes (its hash names the stamp).
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

# nbgrader runs the `alembic` executable to create its gradebook: the venv's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)
# Offline classrooms and CI: use the SST-2 folder beside the project when there is one.
SHARED_SST2 := $(abspath ../shared/data/sst2)
ifeq ($(LAB_DATA_DIR),)
ifneq ($(wildcard $(SHARED_SST2)/train.tsv),)
export LAB_DATA_DIR := $(SHARED_SST2)
endif
endif

ASSIGNMENT := dora
PROXY_VERSION := 5.3.0
PROXY := $(VENV)/node/bin/configurable-http-proxy
PYTEST_ARGS ?=
JUPYTER_PORT ?= 8888
# deploy/install-jupyter-settings copies jupyter/ into the environment; this stamp says it has copied the current files.
LAB_SETTINGS := $(VENV)/.jupyter-settings

.PHONY: help venv lab test test-unit lint format test-grading test-browser test-hub hub-proxy release data bench bench-grading clean

help:
	@echo "make lab           set up .venv and open JupyterLab on notebooks/"
	@echo "make test          set up .venv and run the whole test suite"
	@echo "make test-unit     the fast loop: tests/unit (no sandbox, server, browser, hub or whole notebook)"
	@echo "make lint          ruff: lint and format check (part of make test); make format rewrites"
	@echo "make test-grading  only grade the sample classes end to end (part of make test)"
	@echo "make test-browser  drive JupyterLab in headless Chromium (needs /usr/bin/chromium)"
	@echo "make test-hub      a class on a real JupyterHub: release, submit, collect, grade, return (root, npm)"
	@echo "make release       regenerate notebooks/ from solutions/ with nbgrader"
	@echo "make data          download SST-2 from the hub into data/sst2 (needs network)"
	@echo "make bench         time the lab's DoRA layers, PEFT's DoRA and LoRA side by side"
	@echo "make bench-grading grade a sample class serially and with --jobs 2, side by side"
	@echo "make tune          choose each method's learning rate on held-out train data (hours on 2 cores)"

venv: $(STAMP) $(LAB_SETTINGS)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found: set PYTHON=/path/to/python3.11"; exit 1; }
	@if [ ! -x $(BIN)/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,hub]'
	rm -f $(VENV)/.installed-*
	touch $@

# The lab's Jupyter settings, installed where every JupyterLab started from .venv reads them (jupyter --paths): an
# offline classroom (no news feed, no update checks) and the student's tools only (nbgrader's formgrader, course list
# and Create Assignment off). A hub's environment gets the same files from the same script (docs/deploying.md).
$(LAB_SETTINGS): deploy/install-jupyter-settings $(shell find jupyter -type f) | $(STAMP)
	deploy/install-jupyter-settings $(VENV) > /dev/null
	touch $@

# Jupyter refuses to start as root without --allow-root (containers and classroom VMs often run as root).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: venv
	$(if $(ALLOW_ROOT),@echo "Running as root: starting JupyterLab with --allow-root.")
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.port=$(JUPYTER_PORT) $(ALLOW_ROOT)

# Everything: unit tests, the solutions notebook (nbval), JupyterLab in Chromium, and sample classes graded end to
# end. LAB_FAST shrinks training so notebooks and grading run in minutes; pytest uses both cores
# (--dist loadscope keeps each module, and each notebook's cells, on one worker).
test: venv lint
	LAB_FAST=1 LAB_OUTPUT_DIR=$(abspath outputs/test) $(BIN)/python -m pytest -n 2 --dist loadscope \
		--nbval-lax --nbval-cell-timeout=600 tests solutions/$(ASSIGNMENT)/dora_lab.ipynb $(PYTEST_ARGS)

# The fast loop (about 45 s on 2 cores): tests/unit only; no sandbox, server, browser, hub or whole notebook.
test-unit: venv
	LAB_FAST=1 LAB_OUTPUT_DIR=$(abspath outputs/test) $(BIN)/python -m pytest -n 2 --dist loadscope tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Only the end-to-end grading of the sample classes, honest and adversarial, in sandboxes (part of `make test`).
test-grading: $(STAMP)
	LAB_FAST=1 $(BIN)/python -m pytest -n 2 --dist loadscope -m grading_e2e tests/e2e/test_grading.py tests/e2e/test_grading_adversarial.py $(PYTEST_ARGS)

test-browser: venv
	LAB_FAST=1 $(BIN)/python -m pytest -m browser tests/e2e/test_browser.py $(PYTEST_ARGS)

# A class on a real JupyterHub with local users, on loopback (part of `make test`; needs root and hub-proxy).
test-hub: $(STAMP) $(PROXY)
	LAB_FAST=1 $(BIN)/python -m pytest -m hub tests/e2e/test_hub.py $(PYTEST_ARGS)

# JupyterHub's proxy, configurable-http-proxy from npm, into .venv/node (the hub test finds it there).
hub-proxy: $(PROXY)

$(PROXY):
	npm install --global --prefix $(abspath $(VENV))/node --no-fund --no-audit --loglevel=error \
		configurable-http-proxy@$(PROXY_VERSION)

release: $(STAMP)
	$(BIN)/dora-lab release

data: $(STAMP)
	$(BIN)/dora-lab data download data/sst2

# The model answers (DoRALinear, EfficientDoRALinear) beside PEFT's LoRA and DoRA, on LAB_DEVICE. On a shared machine:
# make bench BENCH_ARGS="--clock cpu --threads 1" (dora-lab bench --help lists the options).
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/dora-lab bench --out outputs/bench.json $(BENCH_ARGS)

# Grades a generated class of 10 serially and with --jobs 2, side by side; prints the ratio (about 10 minutes).
bench-grading: $(STAMP)
	LAB_FAST=1 $(BIN)/dora-lab bench-grading --students 6 --kinds complete --jobs 2

# Exercise 4's learning rates: every method at every rate of a grid, constant and warm-up schedules, scored on
# held-out sentences of the train split (never validation); prints the table. TUNE_ARGS="--seeds 0,1" etc.
TUNE_ARGS ?=
.PHONY: tune
tune: $(STAMP)
	$(BIN)/dora-lab tune $(TUNE_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
