"""The installable distribution (issue: an `oncoxai` command from pip): the wheel holds the one top-level package
oncoxai (the project's packages inside it, setup.py), and, installed into a folder away from the checkout, its
command writes a config from a data file and runs the experiment, every stage running from the installed files
under its own module names (oncoxai/__init__.py's alias)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from ..support import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("oncoxai-*.whl")
    return path


def test_the_wheel_claims_no_name_but_oncoxai(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"oncoxai", "oncoxai-0.1.0.dist-info", "oncoxai-0.1.0.data"}
    for member in (
        "oncoxai/cli.py",
        "oncoxai/shared/config.py",
        "oncoxai/stages/explain/methods.py",
        "oncoxai/stages/preprocess/formats/h5ad.py",  # subpackages found without being listed
        "oncoxai/stages/report/templates/index.html",  # package data
        "oncoxai/fetch/datasets.yaml",
        "oncoxai/fixtures/synthetic.py",
        "oncoxai-0.1.0.data/data/share/oncoxai/configs/demo.yaml",
    ):
        assert member in names, member
    entry_points = zipfile.ZipFile(wheel).read("oncoxai-0.1.0.dist-info/entry_points.txt").decode()
    assert "oncoxai = oncoxai.cli:main" in entry_points


def test_installed_its_command_writes_a_config_and_runs_the_experiment_from_the_installed_files(
    wheel, tmp_path, small_data
):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    work = tmp_path / "work"  # away from the checkout: nothing there to import by accident
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "ONCOXAI_OUTPUTS": str(work / "outputs"), "ONCOXAI_PROGRESS": "0"}

    def oncoxai(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "oncoxai", *args]
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)

    probe = (
        "import sys, oncoxai, shared.config, stages.report.params; "
        "assert oncoxai.INSTALLED and sys.modules['shared.config'] is sys.modules['oncoxai.shared.config']; "
        "assert shared.config.__spec__.name == 'oncoxai.shared.config'; print(shared.config.__file__)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == str(site / "oncoxai" / "shared" / "config.py"), proc.stderr
    help_text = oncoxai("--help")
    assert help_text.returncode == 0 and all(c in help_text.stdout for c in ("run", "init", "check-config", "fetch"))

    written = oncoxai("init", str(small_data / "expression.h5ad"), "--out", "exp.yaml")
    assert written.returncode == 0, written.stderr
    text = (work / "exp.yaml").read_text()
    assert "label_key: tumour_state" in text and "group_key: donor" in text and "scale: counts" in text
    again = oncoxai("init", str(small_data / "expression.h5ad"), "--out", "exp.yaml")
    assert again.returncode == 2 and again.stderr.strip() == (
        "error: exp.yaml: exists; choose another --out or pass --force to overwrite it"
    )
    assert oncoxai("check-config", "exp.yaml").returncode == 0
    quick = ["train_torch.epochs=1", "train_torch.folds=2", "train_torch.baselines=[logistic_regression]"]
    quick += ["explain.methods=[saliency]", "explain.sanity.enabled=false", "explain.stability.enabled=false"]
    quick += ["explain.biology.enabled=false", "preprocess.deepinsight.embedding=pca", "preprocess.n_genes=64"]
    quick += ["preprocess.height=8", "preprocess.width=8", "explain.faithfulness.max_samples=8"]
    run = oncoxai("run", "exp.yaml", *(a for q in quick for a in ("--set", q)))
    assert run.returncode == 0, run.stderr[-3000:]
    exp = work / "outputs" / "expression"
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"resnet18", "logistic_regression"}
    manifest = json.loads((exp / "train_torch" / "manifest.json").read_text())
    assert manifest["git_commit"]  # recorded as for a checkout's run (the version when there is no git)
    rerun = oncoxai("run", "exp.yaml", *(a for q in quick for a in ("--set", q)))
    assert rerun.returncode == 0 and "up to date" in rerun.stderr.lower(), rerun.stderr[-2000:]
