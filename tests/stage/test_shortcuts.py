"""The shortcut audit through the stages: a fixture whose batch (an obs column named in expression.covariates)
travels with the class and has genes of its own, raised 8-fold, is flagged (the model's predictions and its
explanations carry the batch beyond the class, and better than the class); the same fixture with the batch's genes
left flat (the batch still travels with the class) is not. A dense network on expression vectors, one gradient
method: seconds of training."""

from __future__ import annotations

import json
import os

import anndata as ad
import pytest

from ..support import run_stages, write_config

pytestmark = pytest.mark.slow

SIZE = dict(n_samples=600, n_genes=300, n_classes=3, n_markers=6, n_donors=12, fold_change=2.0, seed=3)


def _audit(tmp_path_factory, name: str, batch_fold: float) -> dict:
    from fixtures.synthetic import write_transcriptome

    tmp = tmp_path_factory.mktemp(name)
    data = tmp / "data"
    write_transcriptome(data, **SIZE, batch_genes=10, batch_fold=batch_fold, batch_confounding=0.9)
    cfg = write_config(
        tmp / "c.yaml",
        data,
        stages=["preprocess", "train_torch", "explain", "report"],
        expression={
            "path": str(data / "expression.h5ad"),
            "label_key": "tumour_state",
            "group_key": "donor",
            "covariates": ["batch"],
        },
        preprocess={"n_genes": 200, "transform": "vector"},
        train_torch={
            "models": ["dense"],
            "baselines": [],
            "folds": 2,
            "epochs": 15,
            "batch_size": 32,
            "dense_preset": "custom",
            "dense_widths": [32],
            "patience": 15,
        },
        explain={
            "methods": ["gradient"],
            "markers": str(data / "markers.csv"),
            "precision_k": 6,
            "faithfulness": {"enabled": False},
            "sanity": {"enabled": False},
            "stability": {"enabled": False},
            "biology": {"enabled": False},
        },
    )
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}
    run_stages(cfg, env, "preprocess", "train_torch", "explain", "report")
    exp = tmp / "outputs" / "t"
    return {
        "explain": json.loads((exp / "explain" / "metrics.json").read_text())["models"]["dense"]["shortcuts"],
        "summary": json.loads((exp / "report" / "summary.json").read_text())["shortcuts"]["dense"],
        "html": (exp / "report" / "index.html").read_text(),
        "h5ad": exp / "explain" / "dense" / "attributions.h5ad",
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _audit(tmp_path_factory, "planted", batch_fold=8.0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _audit(tmp_path_factory, "clean", batch_fold=1.0)


def test_a_planted_batch_shortcut_is_flagged(planted):
    audit = planted["explain"]
    assert set(audit["nuisances"]) == {"group", "batch", "total_counts", "n_genes_by_counts"}
    assert audit["nuisances"]["total_counts"] == "continuous" and audit["nuisances"]["batch"] == "categorical"
    gradient = audit["methods"]["gradient"]
    assert gradient["nuisances"]["batch"]["skill"] > gradient["class"]["skill"], gradient
    assert "gradient: batch" in audit["flagged"] and "predictions: batch" in audit["flagged"], audit["flagged"]
    assert planted["summary"]["flagged"] == audit["flagged"]
    html = planted["html"]
    assert "Shortcut audit" in html and "gradient: top 10 genes per class" in html, html[-3000:]
    uns = json.loads(str(ad.read_h5ad(planted["h5ad"], backed="r").uns["shortcuts"]))
    assert uns["flagged"] == audit["flagged"]


def test_a_batch_that_only_travels_with_the_class_is_not_flagged(clean):
    audit = clean["explain"]
    assert not audit["flagged"], audit
    # the batch is carried (it travels with the class) but not beyond the class
    batch = audit["methods"]["gradient"]["nuisances"]["batch"]
    assert batch["p_within_class"] > audit["methods"]["gradient"]["threshold"], batch
    assert clean["summary"]["flagged"] == []
