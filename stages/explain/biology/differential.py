"""Differential expression on the training split (scanpy's rank_genes_groups, Wilcoxon and t-test), and how far each
class's top attributed genes agree with its top DE genes (overlap, Jaccard, permutation p, Spearman)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from shared.dataset import measured_training_rows, read_samples, test_rows

DE_METHODS = ("wilcoxon", "t-test")


@dataclass
class TrainingData:
    """The gene values the models saw, training split (augmented copies left out) and held-out test split."""

    genes: np.ndarray
    symbols: np.ndarray | None
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    de: dict = field(default_factory=dict)

    @classmethod
    def load(cls, exp_dir: Path, spec: dict, genes: np.ndarray, symbols, classes: list[str]) -> TrainingData | None:
        inp = spec["input"]
        source = inp["array"] if inp["kind"] == "vector" else inp.get("gene_values")
        if source is None:
            return None
        scale = float(inp.get("scale", 1.0)) if inp["kind"] == "vector" else 1.0
        samples = read_samples(exp_dir / inp["samples"])
        train, test = measured_training_rows(samples), test_rows(samples)
        values = np.load(exp_dir / source, mmap_mode="r")
        labels = samples["label_index"].to_numpy()

        def rows(r):
            return np.asarray(values[r], dtype=np.float32).reshape(len(r), -1) * np.float32(scale)

        return cls(
            np.asarray(genes).astype(str), symbols, list(classes), rows(train), labels[train], rows(test), labels[test]
        )


def differential_expression(data: TrainingData) -> dict:
    """scanpy's rank_genes_groups one-vs-rest on the training split, per method: {"adata_uns": the result as scanpy
    stores it, "scores": genes x classes scores}. Classes without two training samples are absent."""
    import anndata as ad
    import scanpy as sc

    present = [c for i, c in enumerate(data.classes) if (data.y_train == i).sum() >= 2]
    keep = np.isin(data.y_train, [data.classes.index(c) for c in present])
    adata = ad.AnnData(
        X=data.x_train[keep].astype(np.float32),
        obs=pd.DataFrame(
            {"label": pd.Categorical(np.asarray(data.classes)[data.y_train[keep]], categories=present)},
            index=[f"s{i}" for i in range(int(keep.sum()))],
        ),
        var=pd.DataFrame(index=pd.Index(data.genes, name="gene")),
    )
    out = {}
    for method in DE_METHODS:
        key = "rank_genes_groups" if method == "wilcoxon" else f"rank_genes_groups_{method}"
        sc.tl.rank_genes_groups(
            adata,
            "label",
            method=method,
            reference="rest",
            use_raw=False,
            n_genes=adata.n_vars,
            key_added=key,
            tie_correct=(method == "wilcoxon"),
        )
        frame = sc.get.rank_genes_groups_df(adata, group=None, key=key)
        scores = frame.pivot(index="names", columns="group", values="scores").reindex(index=data.genes)
        out[method] = {"key": key, "uns": adata.uns[key], "scores": scores[[c for c in present]]}
    return out


def order(values: np.ndarray) -> np.ndarray:
    """Gene indices, highest value first (NaN last, ties in index order)."""
    return np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")


def null_overlaps(n_genes: int, k: int, draws: int, seed: int) -> np.ndarray:
    """Overlaps of ``draws`` random k-gene sets with a fixed k-gene set (the permutation null of an overlap)."""
    rng = np.random.default_rng(seed)
    return np.array([int((rng.choice(n_genes, k, replace=False) < k).sum()) for _ in range(draws)])


def de_agreement(
    class_scores: np.ndarray, signed: bool, de: dict, classes: list[str], ks: list[int], permutations: int, seed: int
) -> pd.DataFrame:
    """(n_classes, n_genes) class-mean attributions against the DE scores: per DE method x class x k the overlap of
    the top-k sets, their Jaccard index, the permutation p-value of the overlap, and the Spearman correlation over
    all genes. Signed rankings are compared with up-regulation (highest DE score first); unsigned ones (magnitudes)
    with |DE score|, a gene strongly down in a class being as informative to the model as one strongly up."""
    rows = []
    n_genes = class_scores.shape[1]
    nulls = {k: null_overlaps(n_genes, k, permutations, seed + k) for k in ks}
    for method, result in de.items():
        for c, cls in enumerate(classes):
            if cls not in result["scores"].columns or np.isnan(class_scores[c]).all():
                continue
            de_scores = result["scores"][cls].to_numpy(dtype=float)
            de_key = de_scores if signed else np.abs(de_scores)
            attr_order, de_order = order(class_scores[c]), order(de_key)
            rho = stats.spearmanr(class_scores[c], de_key, nan_policy="omit").statistic
            for k in ks:
                overlap = len(np.intersect1d(attr_order[:k], de_order[:k]))
                p = (1 + int((nulls[k] >= overlap).sum())) / (1 + permutations)
                rows.append(
                    {
                        "de_method": method,
                        "class": cls,
                        "k": k,
                        "overlap": overlap,
                        "expected": k * k / n_genes,
                        "jaccard": overlap / (2 * k - overlap),
                        "p": p,
                        "better_than_chance": bool(p < 0.05),
                        "spearman": float(rho),
                    }
                )
    return pd.DataFrame(rows)


def de_matrix(de: dict, classes: list[str], n_genes: int) -> np.ndarray:
    """(n_classes, n_genes) Wilcoxon DE scores (NaN rows for classes without DE)."""
    scores = de["wilcoxon"]["scores"]
    return np.stack([scores[c].to_numpy(dtype=float) if c in scores else np.full(n_genes, np.nan) for c in classes])
