"""From per-sample gene attributions to class rankings, and their precision against known markers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from shared.errors import UserError


def class_means(values: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, ...) values -> (n_classes, ...) means over the samples of each class (NaN where a class is absent)."""
    out = np.full((n_classes, *values.shape[1:]), np.nan, dtype=np.float64)
    for c in range(n_classes):
        rows = labels == c
        if rows.any():
            out[c] = values[rows].mean(axis=0)
    return out


def top_genes(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """genes x classes table -> long table (class, rank, gene, score) of each class's top ``k`` genes."""
    rows = []
    for cls in table.columns:
        col = table[cls].dropna().sort_values(ascending=False, kind="stable")
        for rank, (gene, score) in enumerate(col.head(k).items(), start=1):
            rows.append((cls, rank, gene, float(score)))
    return pd.DataFrame(rows, columns=["class", "rank", "gene", "score"])


def read_markers(path: str, classes: list[str]) -> dict[str, set[str]]:
    frame = pd.read_csv(path, dtype=str)
    if not {"class", "gene"} <= set(frame.columns):
        raise UserError(f"{path}: a markers file needs the columns class, gene (has {list(frame.columns)})")
    markers = {c: set(g["gene"]) for c, g in frame.groupby("class")}
    if not set(markers) & set(classes):
        raise UserError(f"{path}: no class of the markers file is a class of the data ({classes})")
    return markers


def marker_precision(table: pd.DataFrame, markers: dict[str, set[str]], k: int) -> pd.DataFrame:
    """Precision (and recall) of each class's known markers among its top ``k`` genes of a genes x classes table."""
    rows = []
    for cls, genes in markers.items():
        if cls not in table.columns or table[cls].isna().all():
            continue
        top = table[cls].dropna().sort_values(ascending=False, kind="stable").head(k).index
        hits = int(top.isin(list(genes)).sum())
        rows.append({"class": cls, "k": k, "hits": hits, "precision": hits / k, "n_markers": len(genes),
                     "recall": hits / len(genes)})
    return pd.DataFrame(rows)
