"""Shared fixtures: a small synthetic transcriptome and configs that point at it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
os.environ.setdefault("ONCOXAI_PROGRESS", "0")

# Under pytest-xdist (make test: TEST_WORKERS processes) the cores are shared out: each worker, and the stages it
# starts, gets its share of OpenMP/BLAS threads instead of every process spinning one thread per core. Set before
# torch or numpy is imported here; an explicit OMP_NUM_THREADS etc. in the environment wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# Each test file's layer (pytest -m unit|stage|e2e; make test-fast runs the unit layer, make test all three):
#   unit   no stage or pipeline run: pure functions, loaders on tiny files, config validation (seconds)
#   stage  one stage (or the few it needs) on a small prepared input
#   e2e    the whole pipeline through make, or the containers (test_docker: its docker-marked checks run in
#          make test-docker)
# A file holding tests of two layers is marked by the heavier one until it is split. A test file missing here is a
# collection error, so no test escapes its layer.
LAYERS = {
    "unit": (
        "test_config.py",
        "test_genemap.py",
        "test_streaming.py",
        "test_loaders.py",
        "test_render.py",
        "test_fetch.py",
        "test_handoff.py",
        "test_explain.py",
        "test_transforms.py",
    ),
    "stage": (
        "test_artifacts.py",
        "test_biology.py",
        "test_preprocess.py",
        "test_train.py",
        "test_mri.py",
        "test_tf_gradcam.py",
        "test_report.py",
        "test_bench.py",
        "test_layout_quality.py",  # openTSNE fits at a measured size: seconds each, not a unit's budget
    ),
    "e2e": (
        "test_pipeline.py",
        "test_seam.py",
        "test_reliability.py",
        "test_public_formats.py",  # its GTEx-layout make all; the loader tests beside it are unit-sized
        "test_docker.py",
    ),
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}

# The longest files first (make test hands whole files to the workers in this order), so that no long file starts
# last while the other worker idles. Within a file the order is the file's own.
LONGEST_FIRST = (
    "test_pipeline.py",
    "test_reliability.py",
    "test_seam.py",
    "test_tf_gradcam.py",
    "test_mri.py",
    "test_bench.py",
    "test_train.py",
    "test_public_formats.py",
    "test_biology.py",
    "test_preprocess.py",
    "test_report.py",
    "test_explain.py",
)


def pytest_collection_modifyitems(config, items):
    unmarked = sorted({item.path.name for item in items if item.path.name not in LAYER_OF})
    if unmarked:
        raise pytest.UsageError(f"tests/conftest.py LAYERS names no layer for {', '.join(unmarked)}: add the file")
    for item in items:
        item.add_marker(getattr(pytest.mark, LAYER_OF[item.path.name]))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# The test process is a torch process: TensorFlow is kept out of it (shared/frameworks.py); the TensorFlow checks
# run in their own interpreters, which set ONCOXAI_TEST_TENSORFLOW=1 (tests/test_tf_gradcam.py).
from shared.frameworks import keep_out  # noqa: E402

if os.environ.get("ONCOXAI_TEST_TENSORFLOW") != "1":
    keep_out()


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small fixture: 500 samples x 400 genes, 3 marked classes + the reference class, 6 markers each."""
    from fixtures.synthetic import write_transcriptome

    out = tmp_path_factory.mktemp("data")
    write_transcriptome(
        out, n_samples=500, n_genes=400, n_classes=3, n_markers=6, n_donors=12, fold_change=12.0, seed=1
    )
    return out


def write_config(path: Path, data: Path, stages=("preprocess",), **sections) -> Path:
    cfg = {
        "name": "t",
        "seed": 0,
        "device": "cpu",
        "stages": list(stages),
        "expression": {
            "path": str(data / "expression.h5ad"),
            "format": "h5ad",
            "label_key": "tumour_state",
            "group_key": "donor",
        },
        "preprocess": {"n_genes": 256, "height": 16, "width": 16, "deepinsight": {"embedding": "pca"}},
        "train_torch": {"folds": 2, "epochs": 2, "batch_size": 64, "patience": 2},
        "explain": {"markers": str(data / "markers.csv"), "precision_k": 6},
        "report": {},
    }
    for key, value in sections.items():
        cfg[key] = value
    cfg = {
        k: v for k, v in cfg.items() if k in ("name", "seed", "device", "stages") or k in stages or k == "expression"
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    out = tmp_path / "outputs"
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(out))
    return out
