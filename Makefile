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
# Containers (RUNNER=docker, make images, make test-docker; docs/how-to/containers.md).
BASE_IMAGE ?=
DOCKER_USER ?= $$(id -u):$$(id -g)
DOCKER_SHM_SIZE ?= 2g
DOCKER_RUN_FLAGS ?=
# Settings that change numerics or threading, passed on to the containers when set here: with OpenBLAS told a
# core type (OPENBLAS_CORETYPE) locally but detecting another in a container, results differ in the last bits.
DOCKER_PASS_ENV ?= OMP_NUM_THREADS OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE OPENBLAS_L2_SIZE MKL_NUM_THREADS MKL_CBWR \
	NUMBA_NUM_THREADS NUMEXPR_NUM_THREADS PYTHONHASHSEED CUBLAS_WORKSPACE_CONFIG CUDA_VISIBLE_DEVICES

# RUNNER: docker when an engine answers and the stage images are built, else local.
RUNNER ?= $(shell docker image inspect $(IMAGE_PREFIX)-preprocess >/dev/null 2>&1 && echo docker || echo local)

ifeq ($(RUNNER),docker)
# The GPUs the engine offers (docker/gpu_flags.py): --gpus all with the NVIDIA runtime registered,
# --device nvidia.com/gpu=all where the GPUs are CDI devices only, nothing without either. Override:
# GPU_FLAGS= (CPU) or GPU_FLAGS='--gpus device=1'.
ifeq ($(origin GPU_FLAGS),undefined)
GPU_FLAGS := $(shell docker info --format '{{json .}}' 2>/dev/null | python3 docker/gpu_flags.py 2>/dev/null)
endif
# The same commit string a local run records (shared.artifacts.git_commit): HEAD, "-dirty" with local changes.
GIT_COMMIT := $(shell c=$$(git rev-parse HEAD 2>/dev/null) || { echo unknown; exit 0; }; \
	if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo $$c-dirty; else echo $$c; fi)
# The outputs volume: outputs/, or $$ONCOXAI_OUTPUTS (relative to here or absolute), mounted where the resolved
# config's paths point inside the container (whose working directory is /app).
OUT_ROOT := $(patsubst ./%,%,$(patsubst %/,%,$(or $(ONCOXAI_OUTPUTS),outputs)))
OUT_MOUNT := $(if $(filter /%,$(OUT_ROOT)),$(OUT_ROOT),/app/$(OUT_ROOT))
# ImageNet weights that a local run would find (train_torch.pretrained: auto), read-only.
TORCH_CHECKPOINTS := $(or $(TORCH_HOME),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/torch)/hub/checkpoints
TORCH_MOUNT := $(if $(wildcard $(TORCH_CHECKPOINTS)),-v $(TORCH_CHECKPOINTS):/opt/torch/hub/checkpoints:ro)
# $(1): stage, $(2): resolved config. data/ read-only, outputs/ read-write, as the calling user, no network, a
# read-only root file system with a tmpfs /tmp (HOME and caches; see docker/*.Dockerfile); an image built from
# other sources than this stage's in this tree is refused (docker/check-image.sh; make images rebuilds what changed).
RUN_STAGE = bash docker/check-image.sh $(IMAGE_PREFIX)-$(subst _,-,$(1)) "$$(bash docker/source-hash.sh $(1))" && \
	docker run --rm --network none --user $(DOCKER_USER) $(GPU_FLAGS) --read-only --tmpfs /tmp:exec \
	--shm-size $(DOCKER_SHM_SIZE) $(DOCKER_RUN_FLAGS) \
	-v $(CURDIR)/data:/app/data:ro -v $(abspath $(OUT_ROOT)):$(OUT_MOUNT) $(TORCH_MOUNT) \
	-e ONCOXAI_OUTPUTS=$(OUT_ROOT) -e ONCOXAI_GIT_COMMIT=$(GIT_COMMIT) -e ONCOXAI_PROGRESS \
	$(strip $(foreach v,$(DOCKER_PASS_ENV),$(if $(filter environment%,$(origin $(v))),-e $(v)))) \
	$(IMAGE_PREFIX)-$(subst _,-,$(1)) --config $(2)
# The project's own commands (planning, bundle, index page): the local .venv when there is one, else the report
# image, so that a collaborator with Docker, make and the image tarballs needs no Python stack. The config file is
# mounted where the container sees it under the same path.
CONFIG_MOUNT := $(if $(filter /%,$(CONFIG)),$(CONFIG),/app/$(patsubst ./%,%,$(CONFIG)))
CONTROL = $(if $(wildcard $(PY)),$(PY) -m,mkdir -p $(OUT_ROOT) && bash docker/check-image.sh $(IMAGE_PREFIX)-report \
	"$$(bash docker/source-hash.sh report)" && docker run --rm --network none --user $(DOCKER_USER) --read-only \
	--tmpfs /tmp -v $(CURDIR)/data:/app/data:ro -v $(abspath $(OUT_ROOT)):$(OUT_MOUNT) \
	-v $(abspath $(CONFIG)):$(CONFIG_MOUNT):ro -e ONCOXAI_OUTPUTS=$(OUT_ROOT) -e ONCOXAI_GIT_COMMIT=$(GIT_COMMIT) \
	--entrypoint python $(IMAGE_PREFIX)-report -m)
NEEDS_VENV :=
else ifeq ($(RUNNER),local)
RUN_STAGE = $(PY) -m stages.$(1) --config $(2)
CONTROL = $(PY) -m
NEEDS_VENV := $(STAMP)
else
$(error RUNNER must be local or docker, not '$(RUNNER)')
endif

.PHONY: help setup fixture demo all docs test test-fast clean clean-demo images test-docker lint fetch bench bundle \
	check-report save-images load-images index
help: ## list the targets
	@echo "usage: make <target> [CONFIG=configs/<experiment>.yaml] [ARGS='--set key=value ...'] [RUNNER=local|docker]"
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-22s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
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

test-docker: ## build every image and check that make all RUNNER=docker reproduces the local demo, TF and MRI runs
	IMAGE_PREFIX=$(IMAGE_PREFIX) BASE_IMAGE=$(BASE_IMAGE) PYTHON=$(PYTHON) bash docker/test-docker.sh

lint: ## ruff (lint and format check, pyproject.toml), hadolint on the Dockerfiles, actionlint on the CI workflow; make test runs all three
	PYTHON=$(PYTHON) bash docker/lint.sh

fetch: $(STAMP) ## download a public dataset into data/<DATASET>/, resumable (internet): DATASET=gtex-v8|gse85217|gbm-smartseq2|tcga-pancan, or DATASET=gdc MANIFEST=gdc_manifest.txt [ONLY='lung ...'] [LIST=1]
	@test -n "$(DATASET)$(MANIFEST)" || { echo "usage: make fetch DATASET=gtex-v8|gse85217|gbm-smartseq2|tcga-pancan [ONLY='lung ...'] [LIST=1], or make fetch DATASET=gdc MANIFEST=gdc_manifest.txt"; exit 2; }
	$(PY) -m fetch $(DATASET) --dest data $(if $(MANIFEST),--manifest $(MANIFEST)) $(if $(ONLY),--only $(ONLY)) $(if $(LIST),--list --sizes)

bench: $(STAMP) ## benchmarks side by side with the references -> outputs/bench/{preprocess,layout,loaders,train,explain,explain_memory,wide,mri}.json
	$(PY) -m bench.preprocess all
	$(PY) -m bench.layout
	$(PY) -m bench.loaders
	$(PY) -m bench.train
	$(PY) -m bench.explain
	$(PY) -m bench.explain_memory
	$(PY) -m bench.wide
	$(PY) -m bench.mri

clean-demo: ## remove the demos' fixtures and outputs
	rm -rf outputs/demo data/demo outputs/demo_tcga data/demo_tcga outputs/demo_mri data/demo_mri

clean: ## remove every output (outputs/), keeping data/ and .venv
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
