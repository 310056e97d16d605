"""preprocess: the layout is fitted on training samples only, and a sample's image depends on its own values."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from shared.evaluation.splits import holdout_split
from shared.genemap import PixelGeneMap
from stages.preprocess.transforms import to_uint8
from stages.preprocess.transforms.deepinsight import fit_deepinsight

from ..support import run_stage, write_config


def _preprocess(cfg):
    proc = run_stage("preprocess", cfg, {**os.environ})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_test_samples_do_not_influence_the_fit(tmp_path, small_data, monkeypatch):
    """Scrambling every held-out test sample changes neither the genes, their scaling, nor the layout."""
    cfg = write_config(tmp_path / "c.yaml", small_data)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "a"))
    _preprocess(cfg)
    first = tmp_path / "a" / "t" / "preprocess"
    samples = pd.read_csv(first / "samples.csv")
    test = samples["split"].to_numpy() == "test"
    assert 0.1 < test.mean() < 0.35

    adata = ad.read_h5ad(small_data / "expression.h5ad")
    X = adata.X.toarray()
    rng = np.random.default_rng(5)
    X[test] = rng.poisson(20 * rng.random(X[test].shape))  # wholly different test samples
    adata.X = X
    changed = tmp_path / "changed"
    changed.mkdir()
    adata.write_h5ad(changed / "expression.h5ad")
    (changed / "markers.csv").write_text((small_data / "markers.csv").read_text())
    cfg2 = write_config(tmp_path / "c2.yaml", changed)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "b"))
    _preprocess(cfg2)
    second = tmp_path / "b" / "t" / "preprocess"

    assert pd.read_csv(first / "samples.csv").equals(pd.read_csv(second / "samples.csv"))
    assert pd.read_csv(first / "genes.csv").equals(pd.read_csv(second / "genes.csv"))
    a, b = PixelGeneMap.load(first / "pixel_genes.npz"), PixelGeneMap.load(second / "pixel_genes.npz")
    assert (a.weights != b.weights).nnz == 0 and list(a.genes) == list(b.genes)
    img_a, img_b = np.load(first / "images.npy"), np.load(second / "images.npy")
    np.testing.assert_array_equal(img_a[~test], img_b[~test])
    assert not np.array_equal(img_a[test], img_b[test])

    # the map names the genes the pixels were drawn from: each gene's values (vectors.npy, in genes.csv's order),
    # put where the map says that gene sits, render the stored images again
    genes = pd.read_csv(first / "genes.csv", dtype={"gene": str})["gene"].tolist()
    vectors = np.load(first / "vectors.npy")
    columns = [genes.index(g) for g in a.genes]
    np.testing.assert_array_equal(to_uint8(a.render(vectors[:, columns])), img_a)


def test_image_depends_on_own_values_only():
    rng = np.random.default_rng(0)
    train = rng.random((80, 50)).astype(np.float32)
    gmap, _ = fit_deepinsight(train, [f"g{i}" for i in range(50)], 8, 8, "pca", "lsa", seed=0)
    new = rng.random((10, 50)).astype(np.float32)
    together = to_uint8(gmap.render(new))
    alone = np.stack([to_uint8(gmap.render(new[i : i + 1]))[0] for i in range(10)])
    np.testing.assert_array_equal(together, alone)
    other = new.copy()
    other[1:] = rng.random((9, 50))
    np.testing.assert_array_equal(to_uint8(gmap.render(other))[0], together[0])


def test_holdout_split_is_stratified_and_never_cuts_a_group():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], size=400, p=[0.5, 0.3, 0.2])
    groups = rng.integers(0, 25, size=400).astype(str)
    test = holdout_split(labels, groups, 0.2, seed=0)
    assert not set(groups[test]) & set(groups[~test])
    for c in "abc":
        assert abs((labels[test] == c).mean() - (labels == c).mean()) < 0.1
    plain = holdout_split(labels, None, 0.25, seed=0)
    assert plain.sum() == 100


@pytest.mark.parametrize(
    "problem, mutate, message",
    [
        (
            "missing label",
            lambda a: a.obs.drop(columns="tumour_state", inplace=True),
            "label_key 'tumour_state' is not an obs column",
        ),
        ("negative counts", lambda a: a.X.data.__setitem__(0, -3.0), "negative values"),
        ("NaN", lambda a: a.X.data.__setitem__(0, np.nan), "NaN or inf"),
    ],
)
def test_bad_inputs_fail_with_one_line_and_no_output(tmp_path, small_data, monkeypatch, problem, mutate, message):
    adata = ad.read_h5ad(small_data / "expression.h5ad")
    mutate(adata)
    bad = tmp_path / "bad"
    bad.mkdir()
    adata.write_h5ad(bad / "expression.h5ad")
    cfg = write_config(tmp_path / "c.yaml", bad)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "out"))
    proc = run_stage("preprocess", cfg, {**os.environ})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and str(bad / "expression.h5ad") in lines[0]
    assert not (tmp_path / "out" / "t" / "preprocess").exists()


@pytest.mark.parametrize("method", ["gtex_noise", "interpolate"])
def test_augmentation_uses_training_samples_only(tmp_path, small_data, monkeypatch, method):
    base = write_config(tmp_path / "base.yaml", small_data)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "plain"))
    _preprocess(base)
    aug_cfg = write_config(
        tmp_path / "aug.yaml",
        small_data,
        preprocess={
            "n_genes": 256,
            "height": 16,
            "width": 16,
            "deepinsight": {"embedding": "pca"},
            "augmentation": {"method": method, "min_samples": 150},
        },
    )
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "aug"))
    _preprocess(aug_cfg)
    plain, aug = tmp_path / "plain" / "t" / "preprocess", tmp_path / "aug" / "t" / "preprocess"
    s_plain = pd.read_csv(plain / "samples.csv", dtype=str, keep_default_na=False)
    s_aug = pd.read_csv(aug / "samples.csv", dtype=str, keep_default_na=False)
    n = len(s_plain)
    new = s_aug.iloc[n:]
    assert len(new) > 0 and (new["split"] == "train").all()
    train_ids = set(s_plain.loc[s_plain["split"] == "train", "sample"])
    assert set(new["augmented_from"]) <= train_ids  # never made from a test sample
    parents = s_plain.set_index("sample").loc[new["augmented_from"]]
    assert (parents["label_index"].to_numpy() == new["label_index"].to_numpy()).all()
    counts = s_aug[s_aug["split"] == "train"].groupby("label_index").size()
    assert counts.min() >= 150
    # the original rows, the genes and the layout are exactly those of the run without augmentation
    assert s_aug.iloc[:n][["sample", "split"]].equals(s_plain[["sample", "split"]])
    assert pd.read_csv(aug / "genes.csv").equals(pd.read_csv(plain / "genes.csv"))
    np.testing.assert_array_equal(np.load(aug / "images.npy")[:n], np.load(plain / "images.npy"))
    values = np.load(aug / "vectors.npy")
    assert values[n:].min() >= 0 and values[n:].max() <= 1


def _with_rare_class(folder, small_data, rows):
    """small_data with the samples at ``rows`` relabelled 'rare' (spread over several chunks)."""
    adata = ad.read_h5ad(small_data / "expression.h5ad")
    adata.obs["tumour_state"] = adata.obs["tumour_state"].astype(str)
    adata.obs.iloc[rows, adata.obs.columns.get_loc("tumour_state")] = "rare"
    folder.mkdir()
    adata.write_h5ad(folder / "expression.h5ad")
    return adata


def test_small_classes_left_out_are_named_in_log_manifest_and_dataset(tmp_path, small_data, monkeypatch):
    """preprocess.small_classes leave_out: the rare class's samples are dropped before the split, chunk by chunk,
    and named with their count; the default policy (error) stops on a class of one sample and writes nothing."""
    from shared.artifacts import read_manifest

    rows = [5, 150, 300, 450]
    adata = _with_rare_class(tmp_path / "rare", small_data, rows)
    section = {"n_genes": 64, "transform": "vector", "chunk_size": 128}
    small = {"policy": "leave_out", "min_samples": 5}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rare", preprocess={**section, "small_classes": small})
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "out"))
    proc = _preprocess(cfg)
    logged = "left out 1 classes with fewer than preprocess.small_classes.min_samples=5 samples (4 samples): rare (4)"
    assert logged in proc.stderr
    folder = tmp_path / "out" / "t" / "preprocess"
    samples = pd.read_csv(folder / "samples.csv")
    kept = np.delete(np.asarray(adata.obs_names), rows)
    assert list(samples["sample"]) == list(kept) and "rare" not in set(samples["label"])
    dataset = json.loads((folder / "dataset.json").read_text())
    assert "rare" not in dataset["classes"] and len(dataset["classes"]) == 4
    assert dataset["small_classes"] == {"key": "preprocess.small_classes", **small, "left_out": {"rare": 4}}
    assert read_manifest(folder)["left_out_classes"] == {"rare": 4}
    # each row is its own kept sample's values (library size, log1p, the training min-max of the kept genes)
    genes = pd.read_csv(folder / "genes.csv")
    X = adata[kept].X.toarray()
    X = np.log1p(X / X.sum(1, keepdims=True) * 1e4)[:, adata.var_names.get_indexer(genes["gene"])]
    low, high = genes["train_min"].to_numpy(), genes["train_max"].to_numpy()
    expected = np.clip((X - low) / np.where(high > low, high - low, 1.0), 0, 1)
    np.testing.assert_allclose(np.load(folder / "vectors.npy"), expected, atol=1e-4)

    one = _with_rare_class(tmp_path / "one", small_data, [7])
    cfg = write_config(tmp_path / "e.yaml", tmp_path / "one", preprocess=section)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "err"))
    proc = run_stage("preprocess", cfg, {**os.environ})
    assert proc.returncode == 2 and one.n_obs == 500
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "'rare' (1)" in lines[0] and "preprocess.small_classes.policy: leave_out" in lines[0]
    assert str(tmp_path / "one" / "expression.h5ad") in lines[0]
    assert not (tmp_path / "err" / "t" / "preprocess").exists()


def test_tutorial_config_reads_real_single_cell_data(tmp_path, monkeypatch):
    """docs/tutorial.md's first stage on the data it names: scanpy's pbmc68k_reduced (real 10x PBMCs, shipped with
    scanpy, offline) through configs/pbmc68k.yaml as written, reading the log1p-normalised .raw as it is."""
    import scanpy as sc
    import yaml

    from ..support import REPO

    adata = sc.datasets.pbmc68k_reduced()
    adata.write_h5ad(tmp_path / "pbmc68k.h5ad")
    raw = yaml.safe_load((REPO / "configs" / "pbmc68k.yaml").read_text())
    raw["expression"]["path"] = str(tmp_path / "pbmc68k.h5ad")
    cfg = tmp_path / "pbmc68k.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "out"))
    _preprocess(cfg)
    folder = tmp_path / "out" / "pbmc68k" / "preprocess"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["classes"] == sorted(adata.obs["bulk_labels"].unique()) and dataset["input_scale"] == "log1p"
    samples = pd.read_csv(folder / "samples.csv")
    assert len(samples) == 700 and (samples["split"] == "test").sum() == 140
    # the kept genes' values are .raw's (not the scaled X), min-max scaled on the training cells
    genes = pd.read_csv(folder / "genes.csv")
    values = adata.raw[:, genes["gene"]].X
    values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    rows = adata.obs_names.get_indexer(samples["sample"])
    low, high = genes["train_min"].to_numpy(), genes["train_max"].to_numpy()
    expected = np.clip((values[rows] - low) / np.where(high > low, high - low, 1.0), 0, 1)
    np.testing.assert_allclose(np.load(folder / "vectors.npy"), expected, atol=1e-4)


def test_covariates_csv_holds_the_named_and_qc_covariates_in_samples_order(tmp_path, small_data, monkeypatch):
    """covariates.csv: the obs column named in expression.covariates (text, '' where missing) and the QC covariates
    of each sample's raw counts (every gene, before the gene selection), computed chunk by chunk from the backed
    file, in samples.csv's order; augmented copies have empty covariates and no QC values."""
    from shared.dataset import Dataset

    from ..support import check_declared_outputs

    adata = ad.read_h5ad(small_data / "expression.h5ad")
    batch = np.random.default_rng(3).choice(["b1", "b2", "b3"], adata.n_obs).astype(object)
    batch[::37] = None
    adata.obs["batch"] = pd.Categorical(batch)
    (tmp_path / "cov").mkdir()
    adata.write_h5ad(tmp_path / "cov" / "expression.h5ad")
    expression = {
        "path": str(tmp_path / "cov" / "expression.h5ad"),
        "label_key": "tumour_state",
        "group_key": "donor",
        "covariates": ["batch"],
    }
    section = {"n_genes": 64, "transform": "vector", "chunk_size": 128}
    section["augmentation"] = {"method": "interpolate", "min_samples": 150}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "cov", expression=expression, preprocess=section)
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "out"))
    _preprocess(cfg)
    folder = tmp_path / "out" / "t" / "preprocess"
    check_declared_outputs(folder, "preprocess")
    ds = Dataset.open(folder)
    assert ds.info["covariates"] == ["batch"] and ds.info["group_key"] == "donor"
    table = ds.covariates()
    assert list(table.columns) == ["sample", "batch", "total_counts", "n_genes_by_counts"]
    assert list(table["sample"]) == list(ds.samples["sample"])
    copies = ds.samples["augmented_from"].to_numpy() != ""
    assert copies.any() and (table.loc[copies, "batch"] == "").all()
    assert table.loc[copies, ["total_counts", "n_genes_by_counts"]].isna().all().all()
    measured = table[~copies]
    rows = adata.obs_names.get_indexer(measured["sample"])
    expected = np.where(pd.isna(batch[rows]), "", batch[rows].astype(str))
    assert list(measured["batch"]) == list(expected) and (measured["batch"] == "").any()
    X = adata.X[rows].toarray().astype(np.float64)
    np.testing.assert_array_equal(measured["total_counts"].to_numpy(), X.sum(1))
    np.testing.assert_array_equal(measured["n_genes_by_counts"].to_numpy(), (X > 0).sum(1))

    # a covariate the file does not have: one line naming it, the file and the columns there are; exit 2, no output
    cfg = write_config(
        tmp_path / "e.yaml", tmp_path / "cov", expression={**expression, "covariates": ["sex"]}, preprocess=section
    )
    monkeypatch.setenv("ONCOXAI_OUTPUTS", str(tmp_path / "err"))
    proc = run_stage("preprocess", cfg, {**os.environ})
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "expression.covariates 'sex' is not an obs column" in lines[0] and "'batch'" in lines[0]
    assert str(tmp_path / "cov" / "expression.h5ad") in lines[0]
    assert not (tmp_path / "err" / "t" / "preprocess").exists()
