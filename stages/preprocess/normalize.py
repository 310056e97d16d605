"""Normalisation, gene selection and scaling. Selection and scaling are fitted on training samples only.

Everything here works chunk by chunk, so that a million cells never need to be in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def normalize_log1p(X, target_sum: float):
    """Library-size normalisation to ``target_sum`` counts per sample, then log1p (scanpy); returns a new matrix.

    Per-sample only: nothing is fitted, so it cannot leak between splits.
    """
    import anndata as ad
    import scanpy as sc

    chunk = ad.AnnData(X=X.astype(np.float32))
    sc.pp.normalize_total(chunk, target_sum=target_sum)
    sc.pp.log1p(chunk)
    return chunk.X


def to_log1p(X, scale: str, target_sum: float):
    """Values as ``expression.scale`` declares them -> natural-log expression, the scale every later step reads.

    counts: library size to ``target_sum``, then log1p; log2_tpm10: log2(TPM/10+1) x ln 2 = ln(TPM/10+1), so that
    scanpy's fold changes (which undo log1p with expm1) stay right; log1p and normalized: as they are."""
    if scale == "counts":
        return normalize_log1p(X, target_sum)
    X = X.astype(np.float32)
    return X * np.float32(np.log(2)) if scale == "log2_tpm10" else X


class LoggedCheck:
    """Whether values declared as counts look already log-transformed: not whole numbers and none above
    ``LOGGED_MAX`` (log2 of a million is 20; counts and TPM reach thousands)."""

    LOGGED_MAX = 30.0

    def __init__(self):
        self.max = -np.inf
        self.fractional = False

    def update(self, X) -> None:
        data = X.data if sp.issparse(X) else np.asarray(X)
        if data.size:
            self.max = max(self.max, float(data.max()))
            self.fractional = self.fractional or bool((data != np.round(data)).any())

    def warning(self, path) -> str | None:
        if self.fractional and self.max <= self.LOGGED_MAX:
            return (
                f"{path}: the values look already log-transformed (not whole numbers, none above {self.max:.3g}) "
                "but expression.scale is counts, so they are normalised and logged again; declare "
                "expression.scale: log1p, log2_tpm10 or normalized if they are"
            )
        return None


class GeneMoments:
    """Streaming per-gene count, mean, variance, minimum and maximum over the rows it is shown."""

    def __init__(self, n_genes: int):
        self.n = 0
        self.sum = np.zeros(n_genes)
        self.sumsq = np.zeros(n_genes)
        self.min = np.full(n_genes, np.inf)
        self.max = np.full(n_genes, -np.inf)

    def update(self, X) -> None:
        if X.shape[0] == 0:
            return
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            self.sum += np.asarray(X.sum(axis=0)).ravel()
            self.sumsq += np.asarray(X.multiply(X).sum(axis=0)).ravel()
            self.min = np.minimum(self.min, X.min(axis=0).toarray().ravel())
            self.max = np.maximum(self.max, X.max(axis=0).toarray().ravel())
        else:
            X = np.asarray(X, dtype=np.float64)
            self.sum += X.sum(axis=0)
            self.sumsq += (X * X).sum(axis=0)
            self.min = np.minimum(self.min, X.min(axis=0))
            self.max = np.maximum(self.max, X.max(axis=0))
        self.n += X.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.n, 1)

    @property
    def var(self) -> np.ndarray:
        return np.maximum(self.sumsq / max(self.n, 1) - self.mean**2, 0.0)


def top_variance_genes(var: np.ndarray, n_genes: int) -> np.ndarray:
    """Indices (sorted) of the ``n_genes`` genes with the highest training variance."""
    n_genes = min(n_genes, len(var))
    return np.sort(np.argsort(-var, kind="stable")[:n_genes])


def highly_variable_genes(train_sample, n_genes: int) -> np.ndarray:
    """Indices (sorted) of scanpy's highly variable genes (seurat flavour) on log-normalised training samples."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=train_sample)
    sc.pp.highly_variable_genes(adata, n_top_genes=min(n_genes, adata.n_vars), flavor="seurat")
    return np.flatnonzero(adata.var["highly_variable"].to_numpy())


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-gene min-max scaling to [0, 1] with training minima and maxima; new values are clipped."""

    low: np.ndarray
    high: np.ndarray

    def transform(self, X) -> np.ndarray:
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.clip((dense.astype(np.float32) - self.low) / span, 0.0, 1.0).astype(np.float32)
