"""The report as collaborators get it: every label escaped, the experiments' index, and a real browser's view.

A small pipeline whose class and gene names are HTML (a class named ``<script>alert(1)</script>``, genes named
like tags with handlers) runs through preprocess -> train_torch -> explain -> report; the page must show those
names as text, and headless Chromium (network blocked) must see no dialog, no console error and no request.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from ..support import browser_or_skip, check_declared_outputs, run_stages, write_config

pytestmark = pytest.mark.slow

HOSTILE_CLASS = "<script>alert(1)</script>"
HOSTILE_CLASSES = (HOSTILE_CLASS, 'AC-like" onmouseover="alert(2)', "NPC & <b>bold</b>")
HOSTILE_GENE = "<img src=x onerror=alert({})>"  # every planted marker gene is named so, numbered


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    import anndata as ad

    from fixtures.synthetic import make_transcriptome

    tmp = tmp_path_factory.mktemp("hostile")
    data = tmp / "data"
    data.mkdir()
    adata, markers = make_transcriptome(
        n_samples=360,
        n_genes=200,
        n_classes=3,
        n_markers=6,
        n_donors=12,
        fold_change=12.0,
        seed=3,
        states=HOSTILE_CLASSES,
    )
    rename = {g: HOSTILE_GENE.format(i) for i, g in enumerate(markers["gene"])}
    adata.var_names = [rename.get(g, g) for g in adata.var_names]
    markers["gene"] = markers["gene"].map(rename)
    ad.AnnData(adata.X, obs=adata.obs, var=adata.var).write_h5ad(data / "expression.h5ad")
    markers.to_csv(data / "markers.csv", index=False)
    cfg = write_config(
        tmp / "c.yaml",
        data,
        stages=["preprocess", "train_torch", "explain", "report"],
        preprocess={"n_genes": 144, "height": 12, "width": 12, "deepinsight": {"embedding": "pca"}},
        train_torch={
            "models": ["dense"],
            "baselines": ["logistic_regression"],
            "folds": 2,
            "epochs": 3,
            "batch_size": 32,
            "dense_preset": "custom",
            "dense_widths": [32],
            "patience": 3,
        },
        explain={"methods": ["gradient"], "markers": str(data / "markers.csv"), "precision_k": 6},
    )
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}
    run_stages(cfg, env, "preprocess", "train_torch", "explain", "report")
    return tmp / "outputs"


def test_every_label_and_gene_name_is_escaped(hostile):
    html = (hostile / "t" / "report" / "index.html").read_text()
    summary = json.loads((hostile / "t" / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"dense", "logistic_regression"}
    assert HOSTILE_CLASS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(" in html  # marker genes in the top lists
    # a quote in text is harmless; inside a tag it would be an attribute: no tag carries a handler
    assert not re.search(r"<[^>]*\bon(mouseover|error)\s*=", html) and "NPC &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("<script>") == 1  # the page's own sorting script, nothing else
    check_declared_outputs(hostile / "t" / "report", "report")  # and nothing the report does not declare


def test_conformal_sets_reach_summary_report_and_h5ad(hostile):
    """Each model's conformal coverage and set size in summary.json, the per-sample trust section listing the held-out
    samples whose set is not a single class (their class names escaped), and each explained sample's set in obs."""
    import anndata as ad
    import pandas as pd

    exp = hostile / "t"
    summary = json.loads((exp / "report" / "summary.json").read_text())
    html = (exp / "report" / "index.html").read_text()
    assert "<h2>Per-sample trust</h2>" in html
    for name in ("dense", "logistic_regression"):
        conformal = summary["models"][name]["conformal"]
        sets = pd.read_csv(exp / "train_torch" / name / "test_conformal.csv", keep_default_na=False)
        assert conformal["target_coverage"] == 0.9 and conformal["n"] == len(sets) == summary["n_test"]
        assert conformal["coverage"] == pytest.approx(sets["covered"].mean())
        assert conformal["mean_set_size"] == pytest.approx(sets["set_size"].mean())
        assert set(conformal["per_class"]) == set(HOSTILE_CLASSES) | {"Non-malignant"}
        flagged = sets[sets["set_size"] != 1]
        assert f"{name}: {len(flagged)} of {len(sets)} held-out samples not a single class" in html
        for sample in flagged["sample"].astype(str):
            assert f"<td>{sample}</td>" in html
    adata = ad.read_h5ad(exp / "explain" / "dense" / "attributions.h5ad")
    sets = pd.read_csv(
        exp / "train_torch" / "dense" / "test_conformal.csv", dtype={"sample": str}, keep_default_na=False
    ).set_index("sample")
    assert (adata.obs["conformal_set"].to_numpy() == sets.loc[adata.obs_names, "set"].to_numpy()).all()
    assert (adata.obs["conformal_set_size"].to_numpy() == sets.loc[adata.obs_names, "set_size"].to_numpy()).all()


def test_the_page_in_a_real_browser_shows_names_as_text(hostile):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    from stages.report.browser import CHROMIUM_ARGS, check_pages, chromium_path

    page_path = hostile / "t" / "report" / "index.html"
    results = check_pages(page_path, screenshot=False)
    assert [r.page for r in results] == [page_path.resolve()]
    assert results[0].problems() == [] and results[0].dialogs == []  # no alert() ran, no request for "x"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        page = browser.new_page()
        page.goto(page_path.resolve().as_uri())
        text = page.inner_text("body")
        assert HOSTILE_CLASS in text and "<img src=x onerror=alert(" in text and "NPC & <b>bold</b>" in text
        # the sortable tables sort: the per-class table of the first model by support, both ways
        table = page.locator("table.sortable", has=page.locator("th", has_text="support")).first
        header = table.locator("th", has_text="support")
        column = int(header.evaluate("th => th.cellIndex"))

        def values():
            return [
                float(v)
                for v in table.evaluate(f"t => Array.from(t.tBodies[0].rows).map(r => r.cells[{column}].textContent)")
            ]

        header.click()
        assert values() == sorted(values()) and header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert values() == sorted(values(), reverse=True) and header.get_attribute("aria-sort") == "descending"
        browser.close()
