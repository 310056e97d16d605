# oncoxai: the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

CONFIG ?= configs/demo.yaml
ARGS ?=
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IMAGE_PREFIX ?= oncoxai
PYTEST_ARGS ?=

# RUNNER: docker when an engine answers and the stage images are built, else local.
RUNNER ?= $(shell docker image inspect $(IMAGE_PREFIX)-preprocess >/dev/null 2>&1 && echo docker || echo local)

ifeq ($(RUNNER),docker)
GPU_FLAGS := $(shell docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia && echo --gpus all)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# $(1): stage, $(2): resolved config. data/ read-only, outputs/ read-write, as the calling user, no network.
RUN_STAGE = docker run --rm --network none --user $$(id -u):$$(id -g) $(GPU_FLAGS) \
	-v $(CURDIR)/data:/app/data:ro -v $(CURDIR)/outputs:/app/outputs \
	-e ONCOXAI_GIT_COMMIT=$(GIT_COMMIT) $(IMAGE_PREFIX)-$(subst _,-,$(1)) --config $(2)
else ifeq ($(RUNNER),local)
RUN_STAGE = $(PY) -m stages.$(1) --config $(2)
else
$(error RUNNER must be local or docker, not '$(RUNNER)')
endif

.PHONY: help setup demo all test clean clean-demo
help: ## list the targets
	@echo "usage: make <target> [CONFIG=configs/<experiment>.yaml] [ARGS='--set key=value ...'] [RUNNER=local|docker]"
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-22s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $@

setup: $(STAMP) ## create the local environment (.venv) with every stage's dependencies

data/demo/expression.h5ad data/demo/markers.csv &: shared/synthetic.py | $(STAMP)
	$(PY) -m shared.synthetic transcriptome --out data/demo

demo: $(STAMP) data/demo/expression.h5ad ## fresh machine: set up, generate the fixture, run every stage on CPU
	$(MAKE) --no-print-directory all CONFIG=configs/demo.yaml RUNNER=$(RUNNER)
	@echo "Report: $(CURDIR)/outputs/demo/report/index.html"
	@echo "Summary: $(CURDIR)/outputs/demo/report/summary.json"

all: $(STAMP) ## run the whole pipeline for CONFIG (stages whose inputs and config did not change are skipped)
	plan=$$($(PY) -m shared.pipeline plan $(CONFIG) $(ARGS)); \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -f $$plan pipeline RUNNER=$(RUNNER)

stage-%: $(STAMP) ## run one stage (and what it needs): stage-preprocess, stage-train-torch, stage-explain, stage-report
	plan=$$($(PY) -m shared.pipeline plan $(CONFIG) $(ARGS) --stage $(subst -,_,$*)); \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -f $$plan pipeline-$(subst -,_,$*) RUNNER=$(RUNNER)

test: $(STAMP) ## run the test suite (fast tests and the small end-to-end run)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo: ## remove the demo's fixture and outputs
	rm -rf outputs/demo data/demo

clean: ## remove every output (outputs/), keeping data/ and .venv
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
