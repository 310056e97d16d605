"""The layout-sensitivity check through the stages: preprocess re-fits the layout with another seed and another
embedding, train_torch trains one ResNet-18 member on each (not the dense network: vectors have no layout), explain
sets their rankings against the main model's, report shows the table; every file declared, every figure in range, the
planted markers scored for every model. The same config without the key writes nothing new and leaves the main
models' files and figures as they were."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ..support import check_declared_outputs, run_stages, small_deep_models, write_config

pytestmark = pytest.mark.slow

STAGES = ("preprocess", "train_torch", "explain", "report")
LAYOUTS = {"layouts": 1, "embedding": "pca"}


def _run(tmp, data, layout_sensitivity: dict | None):
    preprocess = {"n_genes": 144, "height": 12, "width": 12, "deepinsight": {"embedding": "tsne"}}
    if layout_sensitivity is not None:
        preprocess["layout_sensitivity"] = layout_sensitivity
    cfg = write_config(
        tmp / "c.yaml",
        data,
        stages=list(STAGES),
        preprocess=preprocess,
        train_torch=small_deep_models("resnet18", "dense"),
        explain={
            "methods": ["saliency", "gradient"],
            "markers": str(data / "markers.csv"),
            "precision_k": 6,
            "top_k": 10,
            "faithfulness": {"enabled": False},
            "sanity": {"enabled": False},
            "stability": {"enabled": False},
            "shortcuts": {"enabled": False},
            "biology": {"enabled": False},
        },
    )
    run_stages(cfg, {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}, *STAGES)
    return tmp / "outputs" / "t"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from fixtures.synthetic import write_transcriptome

    data = tmp_path_factory.mktemp("data")
    write_transcriptome(
        data, n_samples=360, n_genes=200, n_classes=3, n_markers=6, n_donors=12, fold_change=12.0, seed=4
    )
    return {
        "on": _run(tmp_path_factory.mktemp("on"), data, LAYOUTS),
        "off": _run(tmp_path_factory.mktemp("off"), data, None),
    }


def test_other_layouts_are_rendered_trained_on_and_compared(runs):
    exp = runs["on"]
    info = json.loads((exp / "preprocess" / "dataset.json").read_text())
    assert list(info["layouts"]) == ["seed1", "pca"]
    assert info["layouts"]["seed1"]["seed"] == 1 and info["layouts"]["pca"]["embedding"] == "pca"
    main_images = np.load(exp / "preprocess" / "images.npy", mmap_mode="r")
    for name, layout in info["layouts"].items():
        assert layout["genes_moved"] > 0.5, (name, layout)  # a new t-SNE, and PCA, move most genes
        images = np.load(exp / "preprocess" / layout["images"], mmap_mode="r")
        assert images.shape == main_images.shape and not np.array_equal(images, main_images)
    for stage in STAGES[:3]:
        check_declared_outputs(exp / stage, stage)

    index = json.loads((exp / "train_torch" / "layouts.json").read_text())
    assert [e["name"] for e in index] == ["resnet18@seed1", "resnet18@pca"]  # no dense: vectors have no layout
    assert [e["name"] for e in json.loads((exp / "train_torch" / "models.json").read_text())] == ["resnet18", "dense"]
    for e in index:
        spec = json.loads((exp / "train_torch" / e["folder"] / "model.json").read_text())
        assert spec["input"]["array"] == f"preprocess/layouts/{e['layout']}/images.npy"
        assert spec["input"]["gene_map"] == f"train_torch/layouts/{e['layout']}/pixel_genes.npz"
        assert spec["members"] == ["member0.pt"] and 0 <= e["test"]["accuracy"] <= 1

    metrics = json.loads((exp / "explain" / "metrics.json").read_text())["models"]
    assert "layout_sensitivity" not in metrics["dense"]
    check = metrics["resnet18"]["layout_sensitivity"]
    assert check["method"] == "saliency" and check["top_k"] == 10 and set(check["layouts"]) == {"seed1", "pca"}
    classes = info["classes"]
    for entry in [check["main"], check["control"], *check["layouts"].values()]:
        assert 0 <= entry["accuracy"] <= 1 and 0 <= entry["macro_f1"] <= 1
        # planted-marker precision@6 of every model, each class with markers scored (3 of the 4 classes)
        assert 0 <= entry["marker_precision"] <= 1 and len(entry["per_class_precision"]) == 3
    # 6 markers per class among 144 genes: 0.04 at random
    assert check["main"]["marker_precision"] >= 0.3, check["main"]
    for entry in [check["control"], *check["layouts"].values()]:
        assert set(entry["per_class"]) == set(classes)
        for v in entry["per_class"].values():
            assert -1 <= v["spearman"] <= 1 and 0 <= v["top_k_overlap"] <= 1
    for cls, v in check["per_class"].items():
        overlaps = [check["layouts"][n]["per_class"][cls]["top_k_overlap"] for n in ("seed1", "pca")]
        assert v["median_top_k_overlap"] == pytest.approx(np.median(overlaps))
        assert v["robust"] == (v["median_top_k_overlap"] >= check["threshold"])
    assert check["not_robust"] == [c for c, v in check["per_class"].items() if not v["robust"]]

    table = pd.read_csv(exp / "explain" / "resnet18" / "layout_sensitivity.csv")
    assert len(table) == 4 * len(classes)  # main, control and two layouts, a row per class
    uns = ad.read_h5ad(exp / "explain" / "resnet18" / "attributions.h5ad", backed="r").uns
    assert json.loads(str(uns["layout_sensitivity"]))["not_robust"] == check["not_robust"]

    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert summary["layout_sensitivity"]["resnet18"]["per_class"] == check["per_class"]
    html = (exp / "report" / "index.html").read_text()
    assert "Does the explanation survive a change of layout?" in html and "resnet18@pca" in html


def test_without_the_key_nothing_new_is_written_and_the_main_models_are_unchanged(runs):
    on, off = runs["on"], runs["off"]
    assert "layouts" not in json.loads((off / "preprocess" / "dataset.json").read_text())
    assert not (off / "preprocess" / "layouts").exists() and not (off / "train_torch" / "layouts").exists()
    assert not (off / "train_torch" / "layouts.json").exists()
    metrics = json.loads((off / "explain" / "metrics.json").read_text())["models"]
    assert all("layout_sensitivity" not in m for m in metrics.values())
    assert "layout_sensitivity" not in json.loads((off / "report" / "summary.json").read_text())

    def files(exp, stage):
        return {f["path"]: f["sha256"] for f in json.loads((exp / stage / "manifest.json").read_text())["files"]}

    # the main models' inputs, weights and figures are the same bytes with the check on
    for stage, names in {
        "preprocess": ("images.npy", "vectors.npy", "pixel_genes.npz", "samples.csv", "genes.csv"),
        "train_torch": ("resnet18/member0.pt", "resnet18/member1.pt", "resnet18/metrics.json", "dense/metrics.json"),
    }.items():
        a, b = files(on, stage), files(off, stage)
        assert {n: a[n] for n in names} == {n: b[n] for n in names}, stage
    on_m = json.loads((on / "explain" / "metrics.json").read_text())["models"]["resnet18"]["methods"]
    assert on_m == metrics["resnet18"]["methods"]
