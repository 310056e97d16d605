"""The covariates a shortcut audit tests a model's genes against, per sample: the sample-metadata columns named in
``expression.covariates`` (as text) and QC covariates computed from the matrix as read, chunk by chunk, before any
gene filter or normalisation (scanpy's names, as ``sc.pp.calculate_qc_metrics`` gives them):

- ``total_counts``: the sample's sum, its library size; only for ``scale: counts`` (for TPM it is near-constant,
  still harmless; the sum of logged or normalised values measures nothing).
- ``n_genes_by_counts``: the number of genes with a value above zero; for every scale but ``normalized``, where zero
  has no meaning (logged values keep zero at zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .formats.tables import COVARIATE_PREFIX


def qc_columns(scale: str) -> tuple[str, ...]:
    """The QC covariates that mean something for values of ``scale`` (see the module docstring)."""
    if scale == "counts":
        return ("total_counts", "n_genes_by_counts")
    if scale == "normalized":
        return ()
    return ("n_genes_by_counts",)


def qc_metrics(X, scale: str) -> dict[str, np.ndarray]:
    """The QC covariates of the rows of one chunk ``X`` (samples x genes, dense or scipy sparse, every gene):
    ``total_counts`` float64 (summed in float64, exact for float32 counts) and ``n_genes_by_counts`` int64."""
    import scipy.sparse as sp

    columns = qc_columns(scale)
    out: dict[str, np.ndarray] = {}
    if "total_counts" in columns:
        out["total_counts"] = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
    if "n_genes_by_counts" in columns:
        if sp.issparse(X):  # explicit zeros among the stored values are not counted
            positive = X.copy()
            positive.data = (positive.data > 0).astype(np.int64)
            out["n_genes_by_counts"] = np.asarray(positive.sum(axis=1)).ravel().astype(np.int64)
        else:
            out["n_genes_by_counts"] = (np.asarray(X) > 0).sum(axis=1).astype(np.int64)
    return out


class QCAccumulator:
    """The QC covariates of every sample, gathered chunk by chunk (one number per sample and column)."""

    def __init__(self, scale: str):
        self.scale = scale
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in qc_columns(scale)}

    def update(self, X) -> None:
        for name, values in qc_metrics(X, self.scale).items():
            self.parts[name].append(values)

    def result(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items() if parts}


def named_covariates(obs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The covariates ``check_obs`` copied into ``obs`` (text, '' where missing), under their own names."""
    return pd.DataFrame({name: obs[COVARIATE_PREFIX + name].to_numpy() for name in names}, index=obs.index)


def covariates_table(
    samples: np.ndarray, named: pd.DataFrame, qc: dict[str, np.ndarray], augmented: list[str]
) -> pd.DataFrame:
    """covariates.csv's rows: ``samples`` (the measured samples, in samples.csv's order) with their ``named``
    covariates (rows aligned) and ``qc`` columns, then one row per ``augmented`` copy with empty covariates and
    missing QC values (a copy is no measured library). ``n_genes_by_counts`` stays an integer (pandas' Int64)."""
    n = len(samples)
    table = pd.DataFrame({"sample": np.concatenate([np.asarray(samples, dtype=object), np.asarray(augmented, object)])})
    for name in named.columns:
        table[name] = np.concatenate([named[name].to_numpy(dtype=object), np.full(len(augmented), "", object)])
    for name, values in qc.items():
        assert len(values) == n, f"{name}: {len(values)} values for {n} samples"
        if name == "n_genes_by_counts":
            table[name] = pd.array([*values.tolist(), *[None] * len(augmented)], dtype="Int64")
        else:
            table[name] = np.concatenate([values.astype(np.float64), np.full(len(augmented), np.nan)])
    return table
