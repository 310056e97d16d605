"""The methods added through the registry (stages/explain/methods.py) run through explain like every other: DeepLIFT
and GradientSHAP on a dense network (expression vectors) and ResNet-18 (gene images, whose blocks call one ReLU
twice), each with its trust checks, its description, its declared outputs, and the planted markers found."""

from __future__ import annotations

import json
import os

import pytest

from ..support import check_declared_outputs, run_stages, small_deep_models, write_config

pytestmark = pytest.mark.slow

NEW = ("deeplift", "gradient_shap")


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    from fixtures.synthetic import write_transcriptome

    tmp = tmp_path_factory.mktemp("methods")
    data = tmp / "data"
    write_transcriptome(
        data, n_samples=360, n_genes=200, n_classes=3, n_markers=6, n_donors=12, fold_change=12.0, seed=4
    )
    cfg = write_config(
        tmp / "c.yaml",
        data,
        stages=["preprocess", "train_torch", "explain", "report"],
        preprocess={"n_genes": 144, "height": 12, "width": 12, "deepinsight": {"embedding": "pca"}},
        train_torch=small_deep_models("dense", "resnet18"),
        explain={
            "methods": [*NEW, "gradient"],
            "markers": str(data / "markers.csv"),
            "precision_k": 6,
            "gradient_shap": {"background": 16, "samples": 8},
            "faithfulness": {"max_samples": 12, "steps": 5},
            "sanity": {"max_samples": 6},
            "stability": {"max_samples": 12, "draws": 2},
            "biology": {"enabled": False},
        },
    )
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}
    run_stages(cfg, env, "preprocess", "train_torch", "explain", "report")
    return tmp / "outputs" / "t"


def test_deeplift_and_gradient_shap_run_with_every_trust_check(explained):
    from stages.explain.methods import METHODS

    metrics = json.loads((explained / "explain" / "metrics.json").read_text())
    for model in ("dense", "resnet18"):
        entry = metrics["models"][model]
        assert not entry["not_applicable"], entry["not_applicable"]
        for method in NEW:
            result = entry["methods"][method]
            assert result["description"] == METHODS[method].description and result["signed"] is True
            assert isinstance(result["faithfulness"]["better_than_random"], bool)
            assert isinstance(result["sanity"]["insensitive_to_model"], bool)
            assert result["stability"]["folds"]["n"] == 2
            assert ("draws" in result["stability"]) == (method == "gradient_shap")  # the stochastic one
            # 6 planted markers per class among 144 genes: 0.04 at random; measured 0.28 (DeepLIFT on ResNet-18,
            # through its max-pooling) to 0.89 (GradientSHAP on the dense network)
            assert result["marker_precision_at_6"] >= 0.2, (model, method, result["marker_precision_at_6"])
    check_declared_outputs(explained / "explain", "explain")
    html = (explained / "report" / "index.html").read_text()
    assert "DeepLIFT (Shrikumar et al. 2017)" in html and "GradientSHAP (Lundberg &amp; Lee 2017)" in html


def test_sample_trust_table_for_every_explained_sample_and_in_the_h5ad_obs(explained):
    import anndata as ad
    import pandas as pd

    from shared.dataset import read_samples
    from stages.explain.sample_trust import COLUMNS, REASONS

    metrics = json.loads((explained / "explain" / "metrics.json").read_text())
    samples = read_samples(explained / "preprocess" / "samples.csv")
    training = set(samples["sample"][(samples["split"] == "train") & (samples["augmented_from"] == "")])
    summary = json.loads((explained / "report" / "summary.json").read_text())
    for model in ("dense", "resnet18"):
        entry = metrics["models"][model]["sample_trust"]
        table = pd.read_csv(
            explained / "explain" / model / "sample_trust.csv",
            dtype={"sample": str, "distrust": str, "neighbours": str, "ood": str},
            keep_default_na=False,
        )
        assert list(table.columns) == COLUMNS
        assert len(table) == entry["n"] == metrics["models"][model]["n_explained"]
        assert entry["method"] == "deeplift"  # the first gradient-based method configured
        # every explained sample within the default budget: each fold pair's agreement, 3 measured training
        # neighbours, the faithfulness check's samples' deletion AUCs
        assert entry["n_fold_agreement"] == len(table) and table["fold_top_k_shared"].between(0, 1).all()
        assert entry["n_faithfulness"] == 12 and (table["deletion_auc"] != "").sum() == 12
        assert all(len(n.split(";")) == 3 and set(n.split(";")) <= training for n in table["neighbours"])
        assert table["ood"].isin(["True", "False"]).all()
        assert entry["reasons"] == {r: int(table["distrust"].str.contains(r, regex=False).sum()) for r in REASONS}
        assert summary["sample_trust"][model]["reasons"] == entry["reasons"]
        obs = ad.read_h5ad(explained / "explain" / model / "attributions.h5ad", backed="r").obs
        assert list(obs.index) == list(table["sample"])
        for column in set(COLUMNS) - {"sample"}:
            assert column in obs, column
        assert obs["distrust"].astype(str).tolist() == table["distrust"].tolist()
        assert obs["neighbours"].astype(str).tolist() == table["neighbours"].tolist()
        assert obs["ood"].astype(str).tolist() == table["ood"].tolist()
    html = (explained / "report" / "index.html").read_text()
    assert "Samples whose prediction or map should not be trusted" in html and "sample_trust.csv" in html
