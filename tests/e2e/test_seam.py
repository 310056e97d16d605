"""The seam every trainer and modality plugs into: roles, declared outputs, the framework-free evaluation layer,
input scaling from the model's spec, and change detection from each stage's imports.

A trainer defined only here (tests/extra_stages/train_sklearn, plugged in through ONCOXAI_STAGE_PATH) must appear in
the report and summary.json beside train_torch's models, with no change to explain or report.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ..support import REPO, check_declared_outputs, run_stages, write_config

EXTRA_STAGES = REPO / "tests" / "extra_stages"
STAGES = ("preprocess", "train_torch", "train_sklearn", "explain", "report")


def _make(repo: Path, *args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(repo), *args, "RUNNER=local", f"VENV={REPO / '.venv'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _config(tmp_path: Path, data: Path, stages=STAGES) -> Path:
    cfg = write_config(
        tmp_path / "c.yaml",
        data,
        stages=[s for s in stages if s != "train_sklearn"],
        train_torch={
            "models": ["dense"],
            "baselines": ["logistic_regression"],
            "folds": 3,
            "epochs": 3,
            "batch_size": 32,
            "dense_preset": "custom",
            "dense_widths": [64],
            "dropout": 0.0,
            "lr": 0.003,
            "patience": 5,
        },
        explain={"methods": ["gradient", "input_x_gradient"], "markers": str(data / "markers.csv"), "precision_k": 6},
    )
    if "train_sklearn" in stages:
        raw = yaml.safe_load(cfg.read_text())
        raw["stages"] = list(stages)
        raw["train_sklearn"] = {"folds": 3}
        cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg


# -- declared outputs -------------------------------------------------------------------------------------------
def test_declared_output_patterns_match_what_they_say():
    from shared.config import Output

    out = Output("{model}/{method}/figures/class_maps.png", "")
    assert out.matches("resnet18/gradient/figures/class_maps.png")
    assert not out.matches("resnet18/figures/class_maps.png") and not out.matches("a/b/c/figures/class_maps.png")
    assert Output("{model}/tensorboard/**", "").matches("m/tensorboard/r0k0/events.out.tfevents.1")
    assert not Output("figures/*.png", "").matches("figures/a/b.png")


# -- a trainer defined only in the tests -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plugged(tmp_path_factory, small_data):
    tmp = tmp_path_factory.mktemp("seam")
    cfg = _config(tmp, small_data)
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs"), "ONCOXAI_STAGE_PATH": str(EXTRA_STAGES)}
    proc = _make(REPO, "all", f"CONFIG={cfg}", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"exp": tmp / "outputs" / "t", "env": env, "cfg": cfg}


def test_a_trainer_added_as_a_folder_appears_in_report_and_summary(plugged):
    exp = plugged["exp"]
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"dense", "logistic_regression", "knn"}
    knn = summary["models"]["knn"]
    assert knn["provider"] == "train_sklearn" and knn["macro_f1"] > 0.5, knn
    assert summary["models"]["dense"]["provider"] == "train_torch"
    # the same folds (the protocol is shared), so the new model is compared fold by fold with the others
    pairs = {frozenset((c["a"], c["b"])) for c in summary["comparisons"]}
    assert pairs == {
        frozenset(p) for p in (("dense", "logistic_regression"), ("dense", "knn"), ("logistic_regression", "knn"))
    }
    assert summary["not_paired"] == []
    html = (exp / "report" / "index.html").read_text()
    assert "Model: knn" in html and "trained by <code>train_sklearn</code>" in html
    explained = json.loads((exp / "explain" / "metrics.json").read_text())
    assert set(explained["models"]) == {"dense"} and "knn" in explained["not_explained"]
    # the explanations with their trust measures, and the AnnData a scanpy user opens
    for method in ("gradient", "input_x_gradient"):
        entry = summary["explanations"][f"dense/{method}"]
        assert {"deletion_auc", "random_deletion_auc", "better_than_random"} <= set(entry["faithfulness"])
        assert isinstance(entry["sanity"]["insensitive_to_model"], bool)
    assert "How far to trust each explanation" in html
    import anndata as ad

    adata = ad.read_h5ad(exp / "explain" / "dense" / "attributions.h5ad")
    n_test = summary["n_test"]
    assert adata.shape[0] == n_test and set(adata.layers) == {"gradient", "input_x_gradient"}
    assert {"label", "prediction", "split"} <= set(adata.obs) and "gradient_class_means" in adata.varm
    assert adata.layers["gradient"].shape == adata.shape and set(adata.uns["top_genes"]["gradient"]) == set(
        adata.obs["label"].cat.categories
    )
    np.testing.assert_allclose(
        adata.layers["gradient"], np.load(exp / "explain" / "dense" / "gradient" / "attributions.npy"), rtol=1e-6
    )
    # explain's and report's upstream are found by role: the plugged-in trainer is an input of report's manifest
    report_inputs = [i["path"] for i in json.loads((exp / "report" / "manifest.json").read_text())["inputs"]]
    assert any("train_sklearn" in p for p in report_inputs)


def test_every_stage_writes_exactly_its_declared_outputs(plugged, monkeypatch):
    import stages

    monkeypatch.setattr(stages, "__path__", [*stages.__path__, str(EXTRA_STAGES)])  # what ONCOXAI_STAGE_PATH does
    for stage in STAGES:
        check_declared_outputs(plugged["exp"] / stage, stage)


def test_explain_on_a_dense_model_equals_captum_on_the_unscaled_vectors(plugged):
    """The dense network reads float vectors as they are: its attributions are taken there, not at x/255."""
    import pandas as pd
    import torch
    from captum.attr import InputXGradient, Saliency

    from shared.models import load_classifier

    exp = plugged["exp"]
    model, spec = load_classifier(exp / "train_torch" / "dense")
    assert spec["input"]["kind"] == "vector" and spec["input"]["scale"] == 1.0
    samples = pd.read_csv(exp / "preprocess" / "samples.csv")
    test = np.flatnonzero(samples["split"].to_numpy() == "test")
    x = torch.from_numpy(np.load(exp / "preprocess" / "vectors.npy")[test]).float().requires_grad_(True)
    target = torch.from_numpy(samples["label_index"].to_numpy()[test])
    by_hand = {
        "gradient": Saliency(model).attribute(x, target=target, abs=False).detach().numpy(),
        "input_x_gradient": InputXGradient(model).attribute(x, target=target).detach().numpy(),
    }
    for method, expected in by_hand.items():
        got = np.load(exp / "explain" / "dense" / method / "attributions.npy")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # the old bug (inputs divided by 255) gives other values: the comparison above can fail
    scaled = (x.detach() / 255).requires_grad_(True)
    wrong = InputXGradient(model).attribute(scaled, target=target).detach().numpy()
    assert not np.allclose(wrong, by_hand["input_x_gradient"], rtol=1e-2, atol=1e-6)


def test_correct_only_explains_just_the_correctly_classified_test_samples(plugged, tmp_path):
    import anndata as ad
    import pandas as pd
    import torch

    from stages.explain.__main__ import explain_model
    from stages.explain.params import Explain

    exp = plugged["exp"]
    settings = Explain.model_validate(
        {
            "methods": ["gradient"],
            "correct_only": True,
            "sanity": {"enabled": False},
            "faithfulness": {"enabled": False},
            "per_sample": {"figure_per_class": 1},
        }
    )
    entry = explain_model("dense", exp / "train_torch" / "dense", exp, tmp_path, settings, torch.device("cpu"), seed=0)
    predictions = pd.read_csv(exp / "train_torch" / "dense" / "test_predictions.csv")
    n_correct = int((predictions["label"] == predictions["predicted"]).sum())
    assert entry["samples"] == "correctly classified" and entry["n_test"] == len(predictions)
    assert entry["n_explained"] == n_correct < len(predictions)  # the small model gets some wrong: the test can fail
    adata = ad.read_h5ad(tmp_path / "dense" / "attributions.h5ad")
    assert adata.n_obs == n_correct and adata.obs["correct"].all()
    assert np.load(tmp_path / "dense" / "gradient" / "attributions.npy").shape[0] == n_correct
    table = pd.read_csv(tmp_path / "dense" / "gradient" / "sample_top_genes.csv")
    assert set(table["sample"]) <= set(adata.obs_names) and (table["class"] == table["prediction"]).all()
    assert (tmp_path / "dense" / "gradient" / "figures" / "samples.png").is_file()


def test_report_runs_without_a_dataset_provider_and_without_explanations(plugged, tmp_path):
    """Report requires classifiers only: a trainer that reads its inputs itself (the 3-D stage) needs no
    preprocess. Here the classifier folders of a finished run are reused without any dataset stage enabled."""
    out = tmp_path / "outputs"
    for stage in ("train_torch", "train_sklearn"):
        shutil.copytree(plugged["exp"] / stage, out / "t" / stage)
    raw = yaml.safe_load(Path(plugged["cfg"]).read_text())
    raw["stages"] = ["report"]
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**plugged["env"], "ONCOXAI_OUTPUTS": str(out)}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.report", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # with no classifier provider enabled, the config says so before any work
    assert proc.returncode == 2 and "needs a stage that provides classifiers" in proc.stderr, proc.stderr
    raw["stages"] = ["train_sklearn", "report"]
    raw["train_sklearn"]["data"] = str(plugged["exp"] / "preprocess")
    cfg.write_text(yaml.safe_dump(raw))
    shutil.rmtree(out / "t" / "train_sklearn")
    run_stages(cfg, env, "train_sklearn", "report")  # the trainer reads its own inputs, then report
    summary = json.loads((out / "t" / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"knn"} and summary["explanations"] == {}


# -- the evaluation layer is framework-free ----------------------------------------------------------------------
def test_evaluation_layer_imports_no_deep_learning_framework():
    from shared.sources import closure

    files = closure([f"shared.evaluation.{p.stem}" for p in (REPO / "shared" / "evaluation").glob("*.py")])
    for path in files:
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"torch", "torchvision", "tensorflow", "keras", "captum", "monai"}, path
    code = (
        "import sys, shared.evaluation.results, shared.evaluation.baselines, shared.evaluation.compare, "
        "shared.evaluation.rankings; assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


# -- change detection from one source of truth -------------------------------------------------------------------
def test_stage_sources_follow_imports_and_nothing_else():
    from shared.sources import display, stage_sources

    pre = {display(p) for p in stage_sources("preprocess")}
    assert "stages/preprocess/transforms/deepinsight.py" in pre and "shared/genemap.py" in pre
    for stage in ("preprocess", "train_torch", "explain", "report"):
        files = {display(p) for p in stage_sources(stage)}
        # make fetch's downloader (fetch/), like the fixtures and benchmarks, is no part of a stage's result
        assert not any(f.startswith(("fixtures/", "bench/", "fetch/", "tests/")) for f in files), stage
        assert not any(
            f.startswith("stages/") and not f.startswith((f"stages/{stage}/", "stages/__init__")) for f in files
        ), f"{stage} imports another stage"
    assert "stages/report/templates/index.html" in {display(p) for p in stage_sources("report")}
    assert "shared/evaluation/results.py" in {display(p) for p in stage_sources("train_torch")}


def _copy_tree(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("outputs/", "data/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _stamps(exp: Path, stages) -> dict[str, int]:
    return {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in stages}


@pytest.mark.slow
def test_make_reruns_what_an_edit_touches_and_nothing_else(tmp_path):
    repo = _copy_tree(tmp_path / "repo")
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("ONCOXAI_STAGE_PATH", None)
    fixtures = ("data/demo/.fixture", "data/demo_tcga/.fixture")  # the two made by fixtures/synthetic.py
    proc = _make(repo, *fixtures, env=env)
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stdout + proc.stderr
    stages = ("preprocess", "train_torch", "report")
    cfg = _config(tmp_path, repo / "data" / "demo", stages=stages)
    raw = yaml.safe_load(cfg.read_text())  # what reruns is the question here, not the model: the smallest sizes
    raw["preprocess"].update(n_genes=64, height=8, width=8)
    raw["train_torch"].update(folds=2, epochs=1)
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = _make(repo, "all", f"CONFIG={cfg}", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "outputs" / "t"
    before = _stamps(exp, stages)

    # the fixture generator: make regenerates the fixture, whose bytes do not change; no stage reruns
    with open(repo / "fixtures" / "synthetic.py", "a") as fh:
        fh.write("\n# an edit that changes no data\n")
    proc = _make(repo, *fixtures, env=env)
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stdout + proc.stderr
    proc = _make(repo, "all", f"CONFIG={cfg}", env=env)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout + proc.stderr
    assert _stamps(exp, stages) == before

    # a file of report's only: report reruns, nothing before it
    with open(repo / "stages" / "report" / "plots.py", "a") as fh:
        fh.write("\n# an edit\n")
    proc = _make(repo, "all", f"CONFIG={cfg}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = _stamps(exp, stages)
    assert [s for s in stages if after[s] != before[s]] == ["report"]

    # a transform in a sub-package of preprocess: preprocess and everything after it rerun
    before = after
    fingerprint = json.loads((exp / "preprocess" / "manifest.json").read_text())["fingerprint"]
    with open(repo / "stages" / "preprocess" / "transforms" / "base.py", "a") as fh:
        fh.write("\n# an edit\n")
    proc = _make(repo, "all", f"CONFIG={cfg}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = _stamps(exp, stages)
    assert all(after[s] != before[s] for s in stages), (before, after)
    assert json.loads((exp / "preprocess" / "manifest.json").read_text())["fingerprint"] != fingerprint
    assert "stages.preprocess" in proc.stdout + proc.stderr


def test_attribution_class_means_and_figures_work_for_vectors_images_and_volumes(tmp_path):
    """The same code for every modality (MONAI's spatial_dims as the model): batched attribution, class means,
    standardisation and the class-map figure, on vectors, 2-D images and 3-D volumes."""
    import torch
    from torch import nn

    from shared.attribution_figures import plot_class_maps
    from shared.evaluation.rankings import class_means
    from shared.models import Standardize
    from stages.explain.attributions import attribute_batched
    from stages.explain.methods import METHODS

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for shape, conv in (((8,), None), ((1, 6, 6), nn.Conv2d), ((2, 4, 5, 6), nn.Conv3d)):
        spatial = len(shape) - 1
        body = (
            [nn.Flatten(), nn.Linear(int(np.prod(shape)), 3)]
            if conv is None
            else [conv(shape[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * int(np.prod(shape[1:])), 3)]
        )
        model = nn.Sequential(Standardize([0.5] * shape[0], [0.25] * shape[0], spatial_dims=spatial), *body).eval()
        x = rng.integers(0, 256, size=(7, *shape)).astype(np.uint8)
        y = np.array([0, 1, 2, 0, 1, 2, 0])
        attr = attribute_batched(METHODS["input_x_gradient"](model), x, y, torch.device("cpu"), 3, "t", scale=1 / 255)
        assert attr.shape == x.shape
        # against the definition, in one batch: gradient of the target logit times the scaled input
        xt = torch.from_numpy(x).float().div(255).requires_grad_(True)
        model(xt).gather(1, torch.from_numpy(y)[:, None]).sum().backward()
        np.testing.assert_allclose(attr, (xt.grad * xt).detach().numpy(), rtol=1e-5, atol=1e-7)
        maps = class_means(attr, y, 3)
        assert maps.shape == (3, *shape)
        np.testing.assert_allclose(maps[1], attr[y == 1].mean(0), rtol=1e-6)
        png = tmp_path / f"maps{spatial}.png"
        plot_class_maps(
            maps.astype(np.float32),
            ["a", "b", "c"],
            pd_empty(),
            None,
            png,
            "t",
            signed=True,
            feature_names=[f"g{i}" for i in range(shape[0])] if conv is None else None,
        )
        assert png.stat().st_size > 1000


def pd_empty():
    import pandas as pd

    return pd.DataFrame(columns=["class", "rank", "gene", "score"])


def test_an_image_is_rebuilt_only_when_its_own_sources_change(tmp_path):
    """`python3 -m shared.containers source-hash NAME` labels each image with a hash of its own sources; make images
    keeps an image whose label is current. The stage template is a source of every stage image."""
    repo = _copy_tree(tmp_path / "repo")
    names = ("torch", "preprocess", "train_torch", "explain", "report")

    def hashes():
        return {
            n: subprocess.run(
                ["python3", "-m", "shared.containers", "source-hash", n],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for n in names
        }

    before = hashes()
    assert len(set(before.values())) == len(names) and all(len(h) == 16 for h in before.values())
    edits = {
        "stages/report/plots.py": {"report"},
        "shared/genemap.py": {"preprocess", "explain"},
        "fixtures/synthetic.py": set(),
        "shared/evaluation/compare.py": {"report"},
        "shared/evaluation/results.py": {"train_torch"},
        "docker/torch.Dockerfile": {"torch", "train_torch", "explain"},
        "docker/stage.Dockerfile": {"preprocess", "train_torch", "explain", "report"},
    }
    for path, touched in edits.items():
        with open(repo / path, "a") as fh:
            fh.write("\n# an edit\n")
        after = hashes()
        assert {n for n in names if after[n] != before[n]} == touched, path
        before = after


def test_stage_code_hash_is_the_same_where_the_project_is_installed(tmp_path):
    """In a container the project lives in site-packages beside numpy and torch: the stage's sources (and so its
    fingerprint) must be the same files as in the repository, not its third-party imports."""
    from shared.sources import files_hash, stage_sources

    site = tmp_path / "site-packages"
    for package in ("shared", "stages"):
        shutil.copytree(REPO / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    for third_party in ("numpy", "torch", "pandas", "captum", "jinja2"):
        (site / third_party).mkdir()
        (site / third_party / "__init__.py").write_text("# a third-party package\n")
    code = (
        "import json; from shared.sources import files_hash, stage_sources; print(json.dumps({s: files_hash("
        "stage_sources(s)) for s in ('preprocess', 'train_torch', 'explain', 'report')}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "ONCOXAI_STAGE_PATH"}
    installed = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], cwd=site, env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert installed == {s: files_hash(stage_sources(s)) for s in installed}
