"""The artifact contract: a killed stage leaves no manifest, the previous result survives, the next run redoes it."""

from __future__ import annotations

import json
import subprocess
import sys

from shared import config
from shared.artifacts import StageRun, read_manifest

from ..support import REPO, write_config

KILLED_RUN = """
import os, signal, sys
from shared import config
from shared.artifacts import StageRun
exp = config.load(sys.argv[1])
with StageRun(exp, "preprocess") as run:
    (run.out / "images.npy").write_bytes(b"half a file")
    run.checkpoints.mkdir(parents=True)
    (run.checkpoints / "epoch1.pt").write_bytes(b"a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_midway(cfg, env):
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(cfg)], cwd=REPO, env=env, capture_output=True)
    assert proc.returncode == -9


def _run_stage(cfg, env, *extra):
    return subprocess.run(
        [sys.executable, "-m", "stages.preprocess", "--config", str(cfg), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def test_killed_stage_leaves_no_manifest_and_is_redone(tmp_path, small_data, outputs, monkeypatch):
    import os

    env = {**os.environ}
    cfg = write_config(tmp_path / "c.yaml", small_data)
    _kill_midway(cfg, env)
    final = outputs / "t" / "preprocess"
    assert not final.exists() and read_manifest(final) is None
    assert list((outputs / "t").glob(".preprocess.tmp-*")), "the half-written folder stays hidden beside it"

    proc = _run_stage(cfg, env)
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(final)
    assert manifest is not None and not list((outputs / "t").glob(".preprocess.tmp-*"))
    listed = {f["path"] for f in manifest["files"]}
    assert {"images.npy", "pixel_genes.npz", "samples.csv", "genes.csv", "dataset.json"} <= listed
    for key in ("config", "inputs", "packages", "git_commit", "device", "wall_time_s", "fingerprint"):
        assert key in manifest
    assert manifest["inputs"][0]["path"].endswith("expression.h5ad") and len(manifest["inputs"][0]["sha256"]) == 64

    # a second killed run (forced) leaves the previous complete result untouched
    before = (final / "manifest.json").read_text()
    _kill_midway(cfg, env)
    assert (final / "manifest.json").read_text() == before
    assert (final / "images.npy").read_bytes()[:6] == b"\x93NUMPY"

    # an unchanged rerun is skipped, and clears what the killed forced run left beside the result
    assert list((outputs / "t").glob(".preprocess.tmp-*")) and (outputs / "t" / ".checkpoints" / "preprocess").exists()
    proc = _run_stage(cfg, env)
    assert "up to date" in proc.stderr
    assert (final / "manifest.json").read_text() == before
    assert not list((outputs / "t").glob(".preprocess.tmp-*"))
    assert not (outputs / "t" / ".checkpoints" / "preprocess").exists()
    # a changed section reruns
    proc = _run_stage(cfg, env, "--set", "preprocess.n_genes=128")
    assert proc.returncode == 0 and "up to date" not in proc.stderr
    assert json.loads((final / "manifest.json").read_text())["config"]["preprocess"]["n_genes"] == 128
    # so does another seed (the split and the layout's fit are drawn from it): the seed is in every fingerprint
    fingerprint = json.loads((final / "manifest.json").read_text())["fingerprint"]
    proc = _run_stage(cfg, env, "--set", "preprocess.n_genes=128", "--set", "seed=1")
    assert proc.returncode == 0 and "up to date" not in proc.stderr, proc.stderr[-500:]
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 1 and manifest["fingerprint"] != fingerprint


def test_failing_stage_keeps_previous_result(tmp_path, small_data, outputs):
    exp = config.load(write_config(tmp_path / "c.yaml", small_data))
    with StageRun(exp, "preprocess") as run:
        (run.out / "x.txt").write_text("first")
    try:
        with StageRun(exp, "preprocess") as run:
            (run.out / "x.txt").write_text("second")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    final = outputs / "t" / "preprocess"
    assert (final / "x.txt").read_text() == "first"
    assert not list((outputs / "t").glob(".preprocess.tmp-*")) and not list((outputs / "t").glob(".preprocess.old-*"))
