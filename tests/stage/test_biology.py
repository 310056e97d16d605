"""The biology checks of explain (stages/explain/biology/): DE on the training split only, keep/remove retraining,
over-representation, GMT input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from shared.errors import UserError
from stages.explain.biology import differential, gene_sets, importances, retraining


def _experiment(tmp_path, n_train=120, n_test=60, n_genes=40, n_classes=3, seed=0, augmented=0):
    """A minimal experiment folder: samples.csv and vectors.npy with genes 0..2 raised in classes 0..2 (train and
    test alike), plus ``augmented`` augmented training copies."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test + augmented
    labels = rng.integers(0, n_classes, n)
    x = rng.normal(0, 1, (n, n_genes)).astype(np.float32)
    x[np.arange(n), labels] += 3.0
    split = ["train"] * n_train + ["test"] * n_test + ["train"] * augmented
    aug = [""] * (n_train + n_test) + ["s0000"] * augmented
    samples = pd.DataFrame(
        {
            "sample": [f"s{i:04d}" for i in range(n)],
            "label": [f"C{c}" for c in labels],
            "label_index": labels,
            "split": split,
            "group": "g",
            "augmented_from": aug,
        }
    )
    (tmp_path / "preprocess").mkdir(exist_ok=True)
    samples.to_csv(tmp_path / "preprocess" / "samples.csv", index=False)
    np.save(tmp_path / "preprocess" / "vectors.npy", x)
    genes = np.array([f"G{i}" for i in range(n_genes)])
    spec = {"input": {"kind": "vector", "array": "preprocess/vectors.npy", "samples": "preprocess/samples.csv"}}
    return spec, genes, [f"C{c}" for c in range(n_classes)], x, samples


def test_de_is_scanpys_rank_genes_groups_on_the_training_split_only(tmp_path):
    import anndata as ad
    import scanpy as sc

    spec, genes, classes, x, samples = _experiment(tmp_path, augmented=15)
    data = differential.TrainingData.load(tmp_path, spec, genes, None, classes)
    train = ((samples["split"] == "train") & (samples["augmented_from"].fillna("") == "")).to_numpy()
    assert len(data.y_train) == train.sum() == 120 and len(data.y_test) == 60
    de = differential.differential_expression(data)
    by_hand = ad.AnnData(
        X=x[train],
        obs=pd.DataFrame(
            {"label": pd.Categorical(samples["label"][train], categories=classes)},
            index=samples["sample"][train].to_numpy(),
        ),
        var=pd.DataFrame(index=genes),
    )
    for method in ("wilcoxon", "t-test"):
        sc.tl.rank_genes_groups(
            by_hand,
            "label",
            method=method,
            use_raw=False,
            n_genes=len(genes),
            tie_correct=method == "wilcoxon",
            key_added=method,
        )
        expected = sc.get.rank_genes_groups_df(by_hand, group=None, key=method)
        ours = de[method]["scores"]
        for cls in classes:
            want = expected[expected["group"] == cls].set_index("names")["scores"].reindex(genes)
            np.testing.assert_allclose(ours[cls].to_numpy(), want.to_numpy(), rtol=1e-6)
    # gene i is raised in class i: it leads its class's DE ranking
    assert [de["wilcoxon"]["scores"][c].idxmax() for c in classes] == ["G0", "G1", "G2"]


def test_a_test_only_signal_reaches_neither_de_nor_the_retrained_models(tmp_path):
    spec, genes, classes, x, samples = _experiment(tmp_path)
    clean = differential.TrainingData.load(tmp_path, spec, genes, None, classes)
    test = (samples["split"] == "test").to_numpy()
    planted = x.copy()
    planted[test & (samples["label_index"] == 0).to_numpy(), 30] += 50.0  # gene 30 marks class 0, in test only
    np.save(tmp_path / "preprocess" / "vectors.npy", planted)
    leaky = differential.TrainingData.load(tmp_path, spec, genes, None, classes)
    assert not np.array_equal(clean.x_test, leaky.x_test)  # the plant is there...
    de_clean, de_leaky = differential.differential_expression(clean), differential.differential_expression(leaky)
    for method in differential.DE_METHODS:  # ... and DE does not see it
        pd.testing.assert_frame_equal(de_clean[method]["scores"], de_leaky[method]["scores"])
    assert de_leaky["wilcoxon"]["scores"]["C0"].rank(ascending=False)["G30"] > 5
    # the DE genes kept by the retraining, and the fitted models, are the same
    scores = np.stack([de_leaky["wilcoxon"]["scores"][c].to_numpy() for c in classes])
    r_clean, r_leaky = (
        retraining.Retrainer(clean, "logistic_regression", 0),
        retraining.Retrainer(leaky, "logistic_regression", 0),
    )
    kept = retraining.union_top(scores, 5)
    assert 30 not in kept
    np.testing.assert_array_equal(r_clean.fit(kept).coef_, r_leaky.fit(kept).coef_)


def _fixture_split(n_genes=300):
    from fixtures.synthetic import make_transcriptome

    adata, markers = make_transcriptome(
        n_samples=600, n_genes=n_genes, n_classes=3, n_markers=8, n_donors=12, fold_change=8.0, seed=2
    )
    counts = np.asarray(adata.X.todense(), dtype=np.float64)
    x = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    classes = sorted(adata.obs["tumour_state"].astype(str).unique())
    y = np.searchsorted(classes, adata.obs["tumour_state"].astype(str).to_numpy())
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.3
    genes = adata.var_names.to_numpy().astype(str)
    data = differential.TrainingData(genes, None, classes, x[~test], y[~test], x[test], y[test])
    return data, markers, classes


def test_planted_markers_keep_beats_random_genes_and_removing_them_costs_macro_f1():
    data, markers, classes = _fixture_split()
    index = {g: i for i, g in enumerate(data.genes)}
    scores = np.zeros((len(classes), len(data.genes)))
    for cls, group in markers.groupby("class"):  # the planted markers as a perfect ranking
        scores[classes.index(cls), [index[g] for g in group["gene"]]] = 1.0 + np.arange(len(group))[::-1]
    de = differential.differential_expression(data)
    de_scores = np.stack(
        [
            de["wilcoxon"]["scores"][c].to_numpy()
            if c in de["wilcoxon"]["scores"]
            else np.full(len(data.genes), np.nan)
            for c in classes
        ]
    )
    table = retraining.keep_remove(
        scores, de_scores, [10, 50], retraining.Retrainer(data, "logistic_regression", 0), draws=5, seed=0
    )
    at10 = table.set_index("k").loc[10]
    assert at10["keep_f1"] > at10["random_keep_max"], table
    assert at10["keep_beats_random"]
    assert at10["remove_drop"] > 0.05 and at10["remove_f1"] < at10["random_remove_f1"], table
    flags = retraining.verdict(table, 0.01)
    assert flags == {"keep_no_better_than_random": False, "removal_costs_nothing": False}
    # a ranking that ignores the markers is flagged
    rng = np.random.default_rng(1)
    noise = rng.random(scores.shape)
    marker_idx = [index[g] for g in markers["gene"]]
    noise[:, marker_idx] = -1.0  # puts every marker last
    bad = retraining.keep_remove(noise, de_scores, [10, 50], retraining.Retrainer(data, "logistic_regression", 0), 5, 0)
    assert retraining.verdict(bad, 0.01)["removal_costs_nothing"]


def test_over_representation_p_is_the_hypergeometric_tail_by_hand():
    sets = {"A": np.arange(0, 12), "B": np.arange(40, 50), "C": np.arange(5, 25)}
    chosen = np.array([0, 1, 2, 3, 4, 5, 41, 60, 70, 80])
    table = gene_sets.over_representation(chosen, sets, n_background=200).set_index("gene_set")
    N, n = 200, len(chosen)
    raw = {}
    for name, members in sets.items():
        K, a = len(members), len(set(chosen) & set(members.tolist()))
        raw[name] = sum(math.comb(K, i) * math.comb(N - K, n - i) for i in range(a, min(K, n) + 1)) / math.comb(N, n)
        assert table.at[name, "overlap"] == a
        assert table.at[name, "p"] == pytest.approx(raw[name], rel=1e-9)
    # Benjamini-Hochberg by hand
    order = sorted(raw, key=raw.get)
    adj, running = {}, 1.0
    for rank in range(len(order), 0, -1):
        name = order[rank - 1]
        running = min(running, raw[name] * len(order) / rank)
        adj[name] = running
    for name in sets:
        assert table.at[name, "p_adj"] == pytest.approx(adj[name], rel=1e-9)
    assert table.index[0] == "A" and table.at["A", "p_adj"] < 1e-4 and table.at["B", "p_adj"] > 0.05


def test_de_overlap_permutation_p_flags_chance(tmp_path):
    spec, genes, classes, x, samples = _experiment(tmp_path, n_genes=60)
    data = differential.TrainingData.load(tmp_path, spec, genes, None, classes)
    de = differential.differential_expression(data)
    de_scores = np.stack([de["wilcoxon"]["scores"][c].to_numpy() for c in classes])
    good = differential.de_agreement(de_scores, True, de, classes, [5], 500, 0)
    assert set(good["de_method"]) == {"wilcoxon", "t-test"}
    good = good[good["de_method"] == "wilcoxon"]
    assert (good["overlap"] == 5).all() and good["better_than_chance"].all() and (good["p"] < 0.01).all()
    rng = np.random.default_rng(3)
    random_scores = rng.random(de_scores.shape)
    random_scores[:, :3] = -1.0  # never the planted genes
    chance = differential.de_agreement(random_scores, True, de, classes, [5], 500, 0)
    assert not chance["better_than_chance"].any()


def test_gmt_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        gene_sets.read_gmt(tmp_path / "missing.gmt")
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdesc\tG1\tG2\n\nSET_B G3 G4\n")
    with pytest.raises(UserError, match=r"bad\.gmt:3: a GMT line"):
        gene_sets.read_gmt(bad)
    twice = tmp_path / "twice.gmt"
    twice.write_text("S\td\tG1\nS\td\tG2\n")
    with pytest.raises(UserError, match=r"twice\.gmt:2: gene set 'S' is named twice"):
        gene_sets.read_gmt(twice)
    good = tmp_path / "good.gmt"
    good.write_text("S1\td\tG1\tG2\tG3\nS2\td\tX1\tX2\tX3\nS3\td\tSYM4\tG5\tG6\n")
    sets = gene_sets.read_gmt(good)
    genes = np.array([f"G{i}" for i in range(10)])
    symbols = np.array([f"SYM{i}" for i in range(10)])
    matched, left_out = gene_sets.match_gene_sets(sets, genes, symbols, str(good), 3)
    assert sorted(matched) == ["S1", "S3"] and list(matched["S3"]) == [4, 5, 6]
    assert left_out == {"S2": "no gene in the data"}
    with pytest.raises(UserError, match="no gene set shares a gene with the data"):
        gene_sets.match_gene_sets({"S2": ["X1"]}, genes, symbols, str(good), 1)


def test_k_larger_than_the_genes_is_an_error_when_set_and_dropped_from_the_defaults():
    from stages.explain.params import Biology

    with pytest.raises(UserError, match=r"explain\.biology\.retrain_k: k = 100 is larger than the 64 genes"):
        retraining.usable_ks(Biology(retrain_k=[10, 100]), "retrain_k", 64, "m")
    assert retraining.usable_ks(Biology(), "retrain_k", 64, "m") == [10, 20, 50]
    assert retraining.usable_ks(Biology(), "de_k", 30, "m") == [20]


def test_random_forest_permutation_importance_finds_the_informative_gene():
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = (x[:, 2] > 0).astype(int)
    clf = RandomForestClassifier(n_estimators=50, random_state=0).fit(x[:200], y[:200])
    drop = importances.permutation_importance(
        clf.predict_proba, x[200:], y[200:], [0, 1], np.array([0, 1]), 3, 0, chunk=4
    )
    assert drop.shape == (2, 6)
    assert (drop.argmax(axis=1) == 2).all() and (drop[:, 2] > 0.2).all()
    assert np.abs(np.delete(drop, 2, axis=1)).max() < 0.05


def test_fixture_gmt_has_planted_and_decoy_sets_of_equal_size(tmp_path):
    from fixtures.synthetic import write_transcriptome

    write_transcriptome(tmp_path, n_samples=200, n_genes=200, n_classes=3, n_markers=6, n_donors=6)
    sets = gene_sets.read_gmt(tmp_path / "gene_sets.gmt")
    markers = pd.read_csv(tmp_path / "markers.csv")
    planted = {k: v for k, v in sets.items() if k.startswith("PLANTED_")}
    assert len(planted) == 3 and sum(len(v) for v in planted.values()) == len(markers)
    decoys = [v for k, v in sets.items() if k.startswith("DECOY_")]
    assert len(decoys) == 9 and all(len(v) == 6 for v in decoys)
    assert not set().union(*map(set, decoys)) & set(markers["gene"])
    json.dumps(sets)


def test_a_sample_spot_model_has_no_gene_ranking_and_the_report_says_why(tmp_path):
    """sample-spot images have no pixel->gene map: explain records why the biology checks are absent for that
    model, the report says so, and the baseline (on genes) is still checked."""
    import os

    from fixtures.synthetic import write_transcriptome

    from ..support import run_stages, write_config

    data = tmp_path / "data"
    write_transcriptome(data, n_samples=160, n_genes=120, n_classes=3, n_markers=5, n_donors=8, fold_change=10.0)
    cfg = write_config(
        tmp_path / "c.yaml",
        data,
        stages=["preprocess", "train_torch", "explain", "report"],
        preprocess={"n_genes": 64, "transform": "sample-spot", "sample_spot": {"size": 16, "spot": 3, "n_pcs": 10}},
        train_torch={
            "models": ["resnet18"],
            "baselines": ["logistic_regression"],
            "folds": 2,
            "epochs": 1,
            "batch_size": 32,
            "patience": 1,
        },
        explain={
            "methods": ["gradient"],
            "faithfulness": {"enabled": False},
            "sanity": {"enabled": False},
            "stability": {"enabled": False},
            "biology": {"retrain_k": [5, 10], "de_k": [10]},
        },
    )
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp_path / "outputs")}
    run_stages(cfg, env, "preprocess", "train_torch", "explain", "report")
    exp = tmp_path / "outputs" / "t"
    metrics = json.loads((exp / "explain" / "metrics.json").read_text())
    assert "biology" not in metrics["models"]["resnet18"]
    assert "no pixel->gene map" in metrics["models"]["resnet18"]["biology_absent"]
    assert set(metrics["baselines_biology"]["methods"]) == {"logistic_regression"}
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert "resnet18" in summary["biology_absent"] and set(summary["biology"]) == {"baselines"}
    html = (exp / "report" / "index.html").read_text()
    assert "resnet18: not checked against biology: its inputs have no pixel-&gt;gene map" in html
