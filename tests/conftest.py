"""The test run's settings (threads per worker, TensorFlow kept out), each test's layer from its folder, the order
files go to the workers, and the fixtures every layer uses (helpers: tests/support.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .support import REPO, build_once, shared_root

TESTS = REPO / "tests"
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
os.environ.setdefault("ONCOXAI_PROGRESS", "0")

# Under pytest-xdist (make test: TEST_WORKERS processes) the cores are shared out: each worker, and the stages it
# starts, gets its share of OpenMP/BLAS threads instead of every process spinning one thread per core. Set before
# torch or numpy is imported here; an explicit OMP_NUM_THREADS etc. in the environment wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# Each test's layer is the folder it lives in (pytest -m unit|stage|e2e, or the folder itself; make test-fast runs
# the unit layer, make test all three):
#   tests/unit   no stage or pipeline run: pure functions, loaders on tiny files, config validation (seconds)
#   tests/stage  one stage (or the few it needs) on a small prepared input
#   tests/e2e    the whole pipeline through make, or the containers (test_docker: its docker-marked checks run in
#                make test-docker)
# A test file outside the three folders is a collection error, so no test escapes its layer.
LAYERS = ("unit", "stage", "e2e")

# The longest files first (make test hands whole files to the workers in this order), so that no long file starts
# last while the other worker idles. Within a file the order is the file's own.
LONGEST_FIRST = (
    "test_slurm.py",  # mostly waiting on the SLURM executor's status polls: started first, it overlaps the rest
    "test_pipeline.py",
    "test_reliability.py",
    "test_seam.py",
    "test_tf_gradcam.py",
    "test_mri.py",
    "test_bench.py",
    "test_train.py",
    "test_workflow.py",
    "test_public_formats.py",
    "test_biology.py",
    "test_preprocess.py",
    "test_report.py",
    "test_explain.py",
)


def pytest_collection_modifyitems(config, items):
    stray = sorted({str(item.path.relative_to(TESTS)) for item in items if item.path.parent.name not in LAYERS})
    if stray:
        raise pytest.UsageError(f"tests/: {', '.join(stray)} outside tests/unit, tests/stage and tests/e2e: move it")
    for item in items:
        item.add_marker(getattr(pytest.mark, item.path.parent.name))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# The test process is a torch process: TensorFlow is kept out of it (shared/frameworks.py); the TensorFlow checks
# run in their own interpreters, which set ONCOXAI_TEST_TENSORFLOW=1 (tests/test_tf_gradcam.py).
from shared.frameworks import keep_out  # noqa: E402

if os.environ.get("ONCOXAI_TEST_TENSORFLOW") != "1":
    keep_out()


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small fixture: 500 samples x 400 genes, 3 marked classes + the reference class, 6 markers each (written once
    per test run, read by every worker)."""
    from fixtures.synthetic import write_transcriptome

    size = dict(n_samples=500, n_genes=400, n_classes=3, n_markers=6, n_donors=12, fold_change=12.0, seed=1)
    return build_once(shared_root(tmp_path_factory), "data", size, lambda out: write_transcriptome(out, **size))


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    out = tmp_path / "outputs"
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(out))
    return out
