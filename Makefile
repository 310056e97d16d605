# oncoxai: the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

CONFIG ?= configs/demo.yaml
ARGS ?=
VARIANT ?=
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IMAGE_PREFIX ?= oncoxai
PYTEST_ARGS ?=
# make test's pytest-xdist workers (test files are the unit: a file's fixtures stay in one worker); 1 runs the
# suite in this process. Each worker's torch/OpenMP threads: the cores shared out (tests/conftest.py).
TEST_WORKERS ?= 2
# The project's version (pyproject.toml): images are tagged <version>-<source hash> besides :latest.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Where make save-images writes the image tarballs and make load-images reads them.
IMAGES_DIR ?= dist/images
# Containers (make images, make test-docker; docs/how-to/containers.md). BASE_IMAGE: the images' base.
BASE_IMAGE ?=

# RUNNER: how stages and the project's own commands (planning, bundle, index page) run: local (the default: .venv),
# docker (one image per stage; planning in .venv when there is one, else in the report image) or apptainer (the same
# images as dist/sif/*.sif, made by make sif; shared/apptainer.py). shared/containers.py
# builds the commands (the docker run line, its mounts, user, GPU flags, environment, commit string); settings such as
# DOCKER_USER, GPU_FLAGS, DOCKER_RUN_FLAGS, DOCKER_SHM_SIZE and DOCKER_PASS_ENV reach it from the environment or
# make's command line. Standard library only: it runs with $(PYTHON) where there is no .venv.
RUNNER ?= local
ifeq ($(filter local docker apptainer,$(RUNNER)),)
$(error RUNNER must be local, docker or apptainer, not '$(RUNNER)')
endif
export VENV IMAGE_PREFIX
# `$(CONTAINERS) run-stage --dry-run STAGE CONFIG` prints the command a stage runs with.
CONTAINERS := $(PYTHON) -m shared.containers --runner $(RUNNER)
# $(1): stage, $(2): resolved config
RUN_STAGE = $(CONTAINERS) run-stage $(1) $(2)
CONTROL = $(CONTAINERS) control --config $(CONFIG)
NEEDS_VENV := $(if $(filter local,$(RUNNER)),$(STAMP))

.PHONY: help setup fixture demo all docs test test-fast clean clean-demo images test-docker lint fetch bench bundle \
	check-report save-images load-images sif index workflow
help: ## list the targets
	@echo "usage: make <target> [CONFIG=configs/<experiment>.yaml] [ARGS='--set key=value ...'] [RUNNER=local|docker|apptainer]"
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-22s %s\n", $$1, $$2}'

# uv (installed into the venv by pip) installs the environment in a fraction of pip's time, with the same resolution
# (docs/data/test-times.yaml); uv does not read pip's configuration, so where it cannot install (a package index set
# only in pip.conf, say) pip does, as before. The bytecode is compiled at install, as pip does: where
# PYTHONDONTWRITEBYTECODE is set, Python would otherwise compile every module again in every process (a stage's
# imports 10.8 s instead of 4.6 s).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e '.[all,dev]' || { \
	  echo "make setup: uv could not install the environment (above); pip installs it" >&2; \
	  $(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'; }
	touch $@

setup: $(STAMP) ## create the local environment (.venv) with every stage's dependencies

# The fixture is data, made by fixtures/ (not part of any stage): a regenerated fixture with the same bytes keeps its
# files (and their times) as they were, so editing the generator reruns nothing but the generator.
data/demo/.fixture: fixtures/synthetic.py | $(STAMP)
	$(PY) -m fixtures.synthetic transcriptome --out data/demo
	touch $@

data/demo_tcga/.fixture: fixtures/synthetic.py | $(STAMP)
	$(PY) -m fixtures.synthetic tcga --out data/demo_tcga
	touch $@

data/demo_mri/.fixture: fixtures/mri.py | $(STAMP)
	$(PY) -m fixtures.synthetic mri --out data/demo_mri
	touch $@

fixture: data/demo/.fixture data/demo_tcga/.fixture data/demo_mri/.fixture ## generate the demos' synthetic fixtures (data/demo/, data/demo_tcga/, data/demo_mri/)

demo: $(STAMP) data/demo/.fixture data/demo_tcga/.fixture data/demo_mri/.fixture ## fresh machine: set up, make the fixtures, run the three demos on CPU
	$(MAKE) --no-print-directory all CONFIG=configs/demo.yaml RUNNER=$(RUNNER)
	$(MAKE) --no-print-directory all CONFIG=configs/demo_tcga.yaml RUNNER=$(RUNNER)
	$(MAKE) --no-print-directory all CONFIG=configs/demo_mri.yaml RUNNER=$(RUNNER)
	$(MAKE) --no-print-directory index RUNNER=$(RUNNER)
	@echo "Reports: $(CURDIR)/outputs/index.html links $(CURDIR)/outputs/demo/report/index.html $(CURDIR)/outputs/demo_tcga/report/index.html $(CURDIR)/outputs/demo_mri/report/index.html"
	@echo "Summaries: $(CURDIR)/outputs/demo/report/summary.json $(CURDIR)/outputs/demo_tcga/report/summary.json $(CURDIR)/outputs/demo_mri/report/summary.json"

all: $(NEEDS_VENV) ## run the whole pipeline for CONFIG [VARIANT=reference] (stages whose inputs and config did not change are skipped)
	plan=$$($(CONTROL) shared.pipeline plan $(CONFIG) $(ARGS) $(if $(VARIANT),--variant $(VARIANT))); \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -f $$plan pipeline RUNNER=$(RUNNER)

stage-%: $(NEEDS_VENV) ## run one stage (and what it needs): stage-preprocess, stage-train-torch, stage-train-tf-gradcam, stage-train-3d-mri, stage-explain, stage-report
	plan=$$($(CONTROL) shared.pipeline plan $(CONFIG) $(ARGS) $(if $(VARIANT),--variant $(VARIANT)) --stage $(subst -,_,$*)); \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -f $$plan pipeline-$(subst -,_,$*) RUNNER=$(RUNNER)

# The Snakemake workflow (shared/workflow.py, docs/how-to/cluster.md): every experiment of CONFIGS (default: CONFIG),
# VARIANTS ('all': the config as written and each variant; or names, 'default' for the config as written; default:
# VARIANT) and SEEDS, one rule per stage per experiment, run here on CORES cores (default: all) with SNAKEMAKE_ARGS.
CONFIGS ?= $(CONFIG)
VARIANTS ?= $(VARIANT)
SEEDS ?=
CORES ?=
SNAKEMAKE_ARGS ?=
workflow: $(STAMP) ## generate the Snakemake workflow for CONFIGS='a.yaml b.yaml' [VARIANTS=all SEEDS='0 1'] and run it here [CORES=2 SNAKEMAKE_ARGS=-n]
	$(PY) -m shared.workflow run $(CONFIGS) $(ARGS) \
	  $(if $(filter all,$(VARIANTS)),--all-variants,$(foreach v,$(VARIANTS),--variant $(v))) \
	  $(if $(SEEDS),--seeds $(SEEDS)) $(if $(CORES),--cores $(CORES)) $(if $(SNAKEMAKE_ARGS),-- $(SNAKEMAKE_ARGS))

test: $(STAMP) ## ruff, then the test suite: the unit, stage and e2e layers (tests/unit, tests/stage, tests/e2e) [TEST_WORKERS=2 processes]
	PYTHON=$(PYTHON) bash docker/lint.sh ruff
	$(PY) -m pytest $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

test-fast: $(STAMP) ## the unit layer only (no stage or pipeline run): the inner loop while coding
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

docs: $(STAMP) ## build the documentation site into site/ (mkdocs-material, --strict: any warning fails; make test builds it too)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict 2>&1 | { grep -v "^INFO" || true; }
	@echo "Site: $(CURDIR)/site/index.html"

bundle: $(NEEDS_VENV) ## zip a finished run for collaborators: outputs/<experiment>/<experiment>-report.zip, sha256 printed
	plan=$$($(CONTROL) shared.pipeline plan $(CONFIG) $(ARGS) $(if $(VARIANT),--variant $(VARIANT))); \
	$(MAKE) --no-print-directory -q -f $(firstword $(MAKEFILE_LIST)) -f $$plan pipeline RUNNER=$(RUNNER) || \
	  { echo "error: $(CONFIG): the run is not finished (make all CONFIG=$(CONFIG) has work left): run it first" >&2; exit 2; }; \
	$(CONTROL) shared.bundle $(CONFIG) $(ARGS) $(if $(VARIANT),--variant $(VARIANT))

index: $(NEEDS_VENV) ## write outputs/index.html linking every finished experiment's report
	$(CONTROL) stages.report.experiments

check-report: $(STAMP) ## open outputs/index.html and the reports it links in headless Chromium (network blocked); screenshots
	$(PY) -m stages.report.experiments
	$(PY) -m stages.report.browser $(or $(ONCOXAI_OUTPUTS),outputs)/index.html

images: ## build the images whose own sources changed: the shared torch image, then one per stage [BASE_IMAGE=..., REBUILD=1]
	IMAGE_PREFIX=$(IMAGE_PREFIX) BASE_IMAGE=$(BASE_IMAGE) VERSION=$(VERSION) bash docker/images.sh

save-images: ## write every image (current with this tree) to one docker-save tarball + SHA256SUMS in IMAGES_DIR (dist/images)
	IMAGE_PREFIX=$(IMAGE_PREFIX) VERSION=$(VERSION) bash docker/save-images.sh $(IMAGES_DIR)

load-images: ## check IMAGES_DIR's SHA256SUMS, then docker load its tarballs (a collaborator's first step)
	bash docker/load-images.sh $(IMAGES_DIR)

sif: ## Apptainer images from make save-images' tarball: dist/sif/<image>.def, then apptainer build each .sif [ARCHIVE=...]
	$(PYTHON) -m shared.apptainer build $(or $(ARCHIVE),$(IMAGES_DIR)/$(IMAGE_PREFIX)-images-$(VERSION).tar) --prefix $(IMAGE_PREFIX) --version $(VERSION)

test-docker: ## build every image and check that make all RUNNER=docker reproduces the local demo, TF and MRI runs
	IMAGE_PREFIX=$(IMAGE_PREFIX) BASE_IMAGE=$(BASE_IMAGE) PYTHON=$(PYTHON) bash docker/test-docker.sh

lint: ## ruff (lint and format check, pyproject.toml), hadolint on the Dockerfiles, actionlint on the CI workflow; make test runs all three
	PYTHON=$(PYTHON) bash docker/lint.sh

fetch: $(STAMP) ## download a public dataset into data/<DATASET>/, resumable (internet): DATASET=gtex-v8|gse85217|gbm-smartseq2|tcga-pancan, or DATASET=gdc MANIFEST=gdc_manifest.txt [ONLY='lung ...'] [LIST=1]
	@test -n "$(DATASET)$(MANIFEST)" || { echo "usage: make fetch DATASET=gtex-v8|gse85217|gbm-smartseq2|tcga-pancan [ONLY='lung ...'] [LIST=1], or make fetch DATASET=gdc MANIFEST=gdc_manifest.txt"; exit 2; }
	$(PY) -m fetch $(DATASET) --dest data $(if $(MANIFEST),--manifest $(MANIFEST)) $(if $(ONLY),--only $(ONLY)) $(if $(LIST),--list --sizes)

# The commit make bench measures (+dirty: tracked files changed, docs/data/benchmarks.yaml aside, which the run
# itself rewrites); make expands a recipe before running its first line, so this is the commit at the start.
BENCH_NAMES := preprocess layout loaders train explain explain_memory wide mri
BENCH_COMMIT = $(shell git rev-parse --short HEAD)$(shell git diff --quiet HEAD -- . ':(exclude)docs/data/benchmarks.yaml' || echo +dirty)
bench: $(STAMP) ## benchmarks side by side with the references -> outputs/bench/{preprocess,layout,loaders,train,explain,explain_memory,wide,mri}.json, their headline figures -> docs/data/benchmarks.yaml
	$(PY) -m bench.preprocess all
	$(PY) -m bench.layout
	$(PY) -m bench.loaders
	$(PY) -m bench.train
	$(PY) -m bench.explain
	$(PY) -m bench.explain_memory
	$(PY) -m bench.wide
	$(PY) -m bench.mri
	$(PY) -m shared.docs record-bench $(foreach n,$(BENCH_NAMES),outputs/bench/$(n).json) --commit $(BENCH_COMMIT)

clean-demo: ## remove the demos' fixtures and outputs
	rm -rf outputs/demo data/demo outputs/demo_tcga data/demo_tcga outputs/demo_mri data/demo_mri

clean: ## remove every output (outputs/), keeping data/ and .venv
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
