"""What the test layers (tests/unit, tests/stage, tests/e2e) share: the repository root, a small config over a
synthetic fixture, the declared-outputs check, the browser check, and inputs built once per test run for every
pytest-xdist worker that only reads them."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, data: Path, stages=("preprocess",), **sections) -> Path:
    """A small config over a synthetic transcriptome written by fixtures.synthetic.write_transcriptome; ``sections``
    replace whole sections."""
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


def small_deep_models(*models: str) -> dict:
    """train_torch's section for small deep models and no baseline, trained long enough on the small fixtures to
    find their markers (the stage tests of the explanation methods and of the layout check)."""
    return {
        "models": list(models),
        "baselines": [],
        "folds": 2,
        "epochs": 6,
        "batch_size": 32,
        "dense_preset": "custom",
        "dense_widths": [32],
        "patience": 6,
    }


def stage_cmd(stage: str, config: Path, *extra: str) -> list[str]:
    """``python -m stages.<stage> --config FILE [extra]``: a stage as make runs it, in a fresh interpreter."""
    return [sys.executable, "-m", f"stages.{stage}", "--config", str(config), *extra]


def run_stage(stage: str, config: Path, env: dict, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """One stage run from the repository root, its output captured."""
    return subprocess.run(
        stage_cmd(stage, config, *extra), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_stages(config: Path, env: dict, *stages: str) -> None:
    """The stages one after the other; each must exit 0 (the failing one's stderr is the assertion's message)."""
    for stage in stages:
        proc = run_stage(stage, config, env)
        assert proc.returncode == 0, f"{stage}: {proc.stderr[-3000:]}"


def check_declared_outputs(stage_dir: Path, stage: str) -> None:
    """Every file of a finished stage folder is declared, and every declared output without a `when` is there."""
    from shared.config import discover_stages

    spec = discover_stages()[stage]
    files = [str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if p.is_file() and p.name != "manifest.json"]
    undeclared = [f for f in files if not any(o.matches(f) for o in spec.outputs)]
    assert not undeclared, f"{stage} wrote files its StageSpec.outputs does not declare: {undeclared[:10]}"
    missing = [o.path for o in spec.outputs if not o.when and not any(o.matches(f) for f in files)]
    assert not missing, f"{stage} declares outputs it did not write: {missing}"
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert sorted(f["path"] for f in manifest["files"]) == sorted(files)


def browser_or_skip() -> None:
    """Playwright + Chromium here, or a skip that says why (a failure where BROWSER_REQUIRED=1, as in CI)."""
    from stages.report.browser import BrowserUnavailable, chromium_path

    try:
        import playwright.sync_api  # noqa: F401

        chromium_path()
    except (ImportError, BrowserUnavailable) as exc:
        if os.environ.get("BROWSER_REQUIRED") == "1":
            pytest.fail(f"BROWSER_REQUIRED=1 but no headless browser: {exc}")
        pytest.skip(f"no headless browser here ({exc}); .ci/run installs Debian's chromium")


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every pytest-xdist worker of this test run sees: the workers' temporary folders' parent (the
    run's own temporary folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(root: Path, name: str, key: object, build: Callable[[Path], None]) -> Path:
    """``root/<name>-<hash of key>``, made by ``build(folder)`` once per test run by whichever worker asks first;
    the others wait on a file lock, then read it. A build that failed leaves no ``.built`` marker: the next asker
    builds again (and fails the same way, in its own test)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = root / f"{name}-{digest}"
    with open(root / f"{name}-{digest}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / ".built").exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                build(folder)
                (folder / ".built").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def kill_at_points(cmd: list[str], env: dict, seconds: float, fractions, tries: int = 4) -> int:
    """Start ``cmd`` once per fraction and SIGKILL it at ``fraction x seconds``; returns how many runs were killed.

    ``seconds`` is the uninterrupted run's time, measured under whatever load the machine had then. A run that ends
    before its kill point shows the machine is faster now: its own time becomes the base and it is started again
    (up to ``tries`` times per point), so the kill lands inside the run on a loaded or an idle machine alike."""
    import signal
    import time

    killed = 0
    for fraction in sorted(fractions):
        base = seconds
        for _ in range(tries):
            start = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=fraction * base)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed += 1
                break
            base = time.monotonic() - start
    return killed


def shrunk_demo_args(data: Path) -> list[str]:
    """``--set`` options that cut configs/demo.yaml to seconds on the small fixture (``small_data``): one epoch, two
    folds, one baseline, one method, no other layout (the workflow tests, tests/stage/test_workflow.py and
    tests/e2e/test_slurm.py)."""
    sets = {
        "expression.path": data / "expression.h5ad",
        "explain.markers": data / "markers.csv",
        "explain.biology.gene_sets": data / "gene_sets.gmt",
        "preprocess.deepinsight.embedding": "pca",
        "train_torch.epochs": 1,
        "train_torch.folds": 2,
        "train_torch.baselines": "[logistic_regression]",
        "explain.methods": "[gradient]",
        "explain.faithfulness.max_samples": 12,
        "explain.sanity.enabled": "false",
        "explain.stability.enabled": "false",
        "explain.biology.enabled": "false",
        "preprocess.layout_sensitivity.layouts": 0,  # the demo's extra layout model: tested in tests/stage
    }
    return [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]


def shrunk_demo_made(root: Path, data: Path) -> Path:
    """The shrunk demo (``shrunk_demo_args``) as make runs it: its plan's resolved config, then each stage one after
    the other, with the 2 OpenMP/BLAS threads a Snakemake job on 2 cores gets. Built once per test run
    (``build_once``) and only read: the local run that the Snakemake routes (tests/stage/test_workflow.py, on this
    machine; tests/e2e/test_slurm.py, on SLURM) must equal. Returns its experiment folder."""

    def build(folder: Path) -> None:
        threads = dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "2")
        env = {**os.environ, **threads, "ONCOXAI_OUTPUTS": str(folder)}
        plan = [sys.executable, "-m", "shared.pipeline", "plan", "configs/demo.yaml", *shrunk_demo_args(data)]
        planned = subprocess.run(plan, cwd=REPO, env=env, capture_output=True, text=True)
        assert planned.returncode == 0 and planned.stdout.strip().endswith("pipeline.mk"), planned.stderr[-3000:]
        run_stages(folder / "demo" / "config.yaml", env, "preprocess", "train_torch", "explain", "report")

    return build_once(root, "shrunk-demo-made", {"data": str(data), "args": shrunk_demo_args(data)}, build) / "demo"


def json_differences(a, b, path="") -> list[str]:
    """Where two JSON values differ (numbers beyond 1e-9)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in json_differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in json_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        return [] if same else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
