"""Normalisation, gene selection and scaling. Selection and scaling are fitted on training samples only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def normalize_log1p(adata, target_sum: float) -> None:
    """Library-size normalisation to ``target_sum`` counts per sample, then log1p (scanpy), in place.

    Per-sample only: nothing is fitted, so it cannot leak between splits.
    """
    import scanpy as sc

    adata.X = adata.X.astype(np.float32)
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)


def _column_moments(X, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sub = X[rows]
    if sp.issparse(sub):
        mean = np.asarray(sub.mean(axis=0)).ravel()
        sq = np.asarray(sub.multiply(sub).mean(axis=0)).ravel()
        return mean, sq - mean**2
    sub = np.asarray(sub, dtype=np.float64)
    return sub.mean(axis=0), sub.var(axis=0)


def top_variance_genes(X, train: np.ndarray, n_genes: int) -> np.ndarray:
    """Indices (sorted) of the ``n_genes`` genes with the highest variance over the training rows."""
    _, var = _column_moments(X, train)
    n_genes = min(n_genes, X.shape[1])
    top = np.argsort(-var, kind="stable")[:n_genes]
    return np.sort(top)


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-gene min-max scaling to [0, 1] with training minima and maxima; new values are clipped."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, X, train: np.ndarray) -> "MinMaxScaler":
        sub = X[train]
        if sp.issparse(sub):
            low = np.asarray(sub.min(axis=0).todense()).ravel()
            high = np.asarray(sub.max(axis=0).todense()).ravel()
        else:
            low, high = np.min(sub, axis=0), np.max(sub, axis=0)
        return cls(low.astype(np.float32), high.astype(np.float32))

    def transform(self, X) -> np.ndarray:
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.clip((dense.astype(np.float32) - self.low) / span, 0.0, 1.0).astype(np.float32)
