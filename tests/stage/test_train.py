"""train_torch: early stopping, resume after a kill, DDP agreement, the statistics, and the baselines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from shared.evaluation.compare import compare_models, corrected_resampled_ttest, wilcoxon, wilcoxon_min_p
from shared.torch_training.fit import EarlyStopping

from ..support import REPO, check_declared_outputs, write_config

DENSE = {
    "models": ["dense"],
    "baselines": ["logistic_regression"],
    "folds": 3,
    "epochs": 6,
    "patience": 10,
    "batch_size": 32,
    "dense_preset": "custom",
    "dense_widths": [64, 32],
    "dropout": 0.0,
    "lr": 0.003,
}


def test_early_stopping_stops_after_patience_and_restores_the_best():
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    losses = [1.0, 0.8, 0.795, 0.9, 0.7]
    stopped_at = None
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            model.weight.fill_(epoch)
        if stopper.step(epoch, loss, model):
            stopped_at = epoch
            break
    assert stopped_at == 3  # 0.795 is not better by min_delta, 0.9 is worse: two bad epochs
    assert stopper.best_epoch == 1
    stopper.restore(model)
    assert torch.all(model.weight == 1)


def test_corrected_ttest_matches_a_hand_computation():
    a = np.array([0.80, 0.82, 0.85, 0.79, 0.81])
    b = np.array([0.78, 0.80, 0.80, 0.78, 0.80])
    d = a - b
    t_expected = d.mean() / np.sqrt((1 / 5 + 20 / 80) * d.var(ddof=1))
    res = corrected_resampled_ttest(a, b, n_train=80, n_test=20)
    assert res["t"] == pytest.approx(t_expected)
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(t_expected), 4))
    naive = stats.ttest_rel(a, b).pvalue
    assert res["p"] > naive  # the correction widens the interval


def test_wilcoxon_limits_and_plain_statement():
    assert wilcoxon_min_p(5) == pytest.approx(0.0625)
    a = np.arange(5) + 1.0
    res = wilcoxon(a, a - np.arange(1, 6) * 0.01)  # a beats b on every fold
    assert res["p"] == pytest.approx(0.0625)
    out = compare_models("x", "y", a, a - 0.01 * np.arange(1, 6), 80, 20, "accuracy")
    assert "cannot reach p < 0.05" in out["statement"]
    rng = np.random.default_rng(0)
    a10, b10 = rng.random(10) + 0.5, rng.random(10)
    res10 = wilcoxon(a10, b10)
    assert res10["p"] == pytest.approx(stats.wilcoxon(a10, b10).pvalue)
    assert res10["min_attainable_p"] < 0.05


def _stage(cfg, env, *args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train_torch", "--config", str(cfg), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, small_data):
    """A preprocessed small fixture, copied into each test's own outputs folder."""
    tmp = tmp_path_factory.mktemp("prep")
    cfg = write_config(tmp / "c.yaml", small_data, stages=("preprocess", "train_torch"), train_torch=DENSE)
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.preprocess", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return {"cfg": cfg, "preprocess": tmp / "outputs" / "t" / "preprocess"}


def _outputs(tmp_path, prepared):
    out = tmp_path / "outputs"
    shutil.copytree(prepared["preprocess"], out / "t" / "preprocess")
    return out, {**os.environ, "ONCOXAI_OUTPUTS": str(out)}


def test_baselines_share_the_folds_and_beat_chance(tmp_path, prepared):
    out, env = _outputs(tmp_path, prepared)
    _stage(prepared["cfg"], env)
    deep = pd.read_csv(out / "t" / "train_torch" / "dense" / "folds.csv")
    base = pd.read_csv(out / "t" / "train_torch" / "logistic_regression" / "folds.csv")
    assert (deep["val_n"].to_numpy() == base["val_n"].to_numpy()).all()
    metrics = json.loads((out / "t" / "train_torch" / "logistic_regression" / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > 0.8
    cv = pd.read_csv(out / "t" / "train_torch" / "dense" / "cv_predictions.csv")
    samples = pd.read_csv(out / "t" / "preprocess" / "samples.csv")
    assert set(cv["sample"]) == set(samples.loc[samples["split"] == "train", "sample"])  # every fold's predictions
    # the same splits fingerprint, so report compares them fold by fold (compare_all)
    from shared.evaluation.compare import compare_all

    dense = json.loads((out / "t" / "train_torch" / "dense" / "metrics.json").read_text())
    assert (
        dense["splits"]["splits"] == metrics["splits"]["splits"] and dense["splits"]["n_test"] == metrics["test"]["n"]
    )
    pairs = compare_all([{"name": m["model"], "folds": m["folds"], "splits": m["splits"]} for m in (dense, metrics)])
    assert len(pairs) == 1 and pairs[0]["comparable"] and pairs[0]["a"] == "dense" and pairs[0]["n_folds"] == 3
    # split-conformal sets of every held-out test sample, calibrated out of fold, at the default 90%
    sets = pd.read_csv(out / "t" / "train_torch" / "dense" / "test_conformal.csv", keep_default_na=False)
    test_ids = samples.loc[samples["split"] == "test", "sample"].astype(str)
    assert list(sets.columns) == ["sample", "label", "predicted", "set", "set_size", "covered"]
    assert sorted(sets["sample"].astype(str)) == sorted(test_ids)
    assert (sets["set_size"] == [len(s.split("|")) if s else 0 for s in sets["set"]]).all()
    assert (sets["covered"] == [lab in s.split("|") for lab, s in zip(sets["label"], sets["set"], strict=True)]).all()
    figures = dense["conformal"]
    assert (
        figures["target_coverage"] == 0.9
        and figures["n"] == len(test_ids) == figures["n_single"] + figures["n_empty"] + figures["n_ambiguous"]
    )
    assert figures["coverage"] == pytest.approx(sets["covered"].mean())
    assert figures["n_calibration"] == len(samples[samples["split"] == "train"])
    check_declared_outputs(out / "t" / "train_torch", "train_torch")


def test_resume_after_kill_gives_the_same_result(tmp_path, prepared):
    out_a, env_a = _outputs(tmp_path / "a", prepared)
    _stage(prepared["cfg"], env_a)
    reference = json.loads((out_a / "t" / "train_torch" / "dense" / "metrics.json").read_text())

    out_b, env_b = _outputs(tmp_path / "b", prepared)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.train_torch", "--config", str(prepared["cfg"])],
        cwd=REPO,
        env=env_b,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list((out_b / "t" / ".checkpoints" / "train_torch").rglob("r0k1.pt"))
        if found:
            target = found[0]
            break
        time.sleep(0.05)
    assert target is not None, "the run ended before a checkpoint of the second fold appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out_b / "t" / "train_torch" / "manifest.json").exists()

    resumed = _stage(prepared["cfg"], env_b)
    assert "resumed after epoch" in resumed.stderr
    result = json.loads((out_b / "t" / "train_torch" / "dense" / "metrics.json").read_text())
    assert result["test"] == pytest.approx(reference["test"])
    assert [f["val_macro_f1"] for f in result["folds"]] == pytest.approx(
        [f["val_macro_f1"] for f in reference["folds"]]
    )
    assert not (out_b / "t" / ".checkpoints" / "train_torch").exists()


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_agrees_with_one_process(tmp_path, prepared):
    out_a, env_a = _outputs(tmp_path / "a", prepared)
    _stage(prepared["cfg"], env_a, "--set", "train_torch.baselines=[]")
    single = pd.read_csv(out_a / "t" / "train_torch" / "dense" / "test_predictions.csv")

    out_b, env_b = _outputs(tmp_path / "b", prepared)
    env_b = {**env_b, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "stages.train_torch",
        "--config",
        str(prepared["cfg"]),
        "--set",
        "train_torch.baselines=[]",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env_b, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out_b / "t" / "train_torch" / "manifest.json").read_text())
    assert "2 processes" in manifest["device"]
    ddp = pd.read_csv(out_b / "t" / "train_torch" / "dense" / "test_predictions.csv")
    probs = [c for c in single.columns if c.startswith("p_")]
    # Tolerance: the two ranks' half-batches average to the single-process batch gradient up to float32
    # summation order, and an uneven last batch weighs its samples slightly differently; over 6 epochs this moves
    # typical probabilities by ~1e-3 and a sample near a class boundary by up to ~0.05 (measured).
    diff = np.abs(single[probs].to_numpy() - ddp[probs].to_numpy())
    assert diff.mean() < 0.005 and diff.max() < 0.1, (diff.mean(), diff.max())
    assert (single["predicted"] == ddp["predicted"]).mean() > 0.97


def test_class_too_small_for_the_folds_is_a_one_line_error(tmp_path, prepared):
    out, env = _outputs(tmp_path, prepared)
    proc = _stage(prepared["cfg"], env, "--set", "train_torch.folds=60", check=False)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "fewer than train_torch.folds=60" in errors[0]
    assert not (out / "t" / "train_torch").exists()
