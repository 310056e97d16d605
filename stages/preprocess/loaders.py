"""Readers that turn an input file into an AnnData with the label (and group) columns checked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.errors import UserError

from .params import Expression


def read_expression(cfg: Expression):
    """Return an in-memory AnnData (X = the chosen matrix) with ``obs['label']`` and optional ``obs['group']``."""
    if cfg.format == "h5ad":
        adata = _read_h5ad(cfg)
    else:  # pragma: no cover - the config schema admits only the formats handled above
        raise UserError(f"expression.format: '{cfg.format}' is not supported")
    _check_obs(adata, cfg)
    _check_values(adata, cfg)
    return adata


def _read_h5ad(cfg: Expression):
    import anndata as ad

    path = Path(cfg.path)
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for truncated or foreign files
        raise UserError(f"{path}: cannot read as .h5ad ({type(exc).__name__}: {exc}); is the file complete?") from None
    if cfg.use_raw:
        if adata.raw is None:
            raise UserError(f"{path}: expression.use_raw is true but the file has no .raw")
        adata = ad.AnnData(X=adata.raw.X, obs=adata.obs, var=adata.raw.var)
    elif cfg.layer is not None:
        if cfg.layer not in adata.layers:
            raise UserError(f"{path}: expression.layer '{cfg.layer}' not found (layers: {list(adata.layers)})")
        adata = ad.AnnData(X=adata.layers[cfg.layer], obs=adata.obs, var=adata.var)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(f"{path}: empty matrix ({adata.n_obs} samples x {adata.n_vars} genes)")
    return adata


def _check_obs(adata, cfg: Expression) -> None:
    path = cfg.path
    if cfg.label_key not in adata.obs:
        raise UserError(f"{path}: expression.label_key '{cfg.label_key}' is not an obs column (have: {list(adata.obs.columns)})")
    labels = adata.obs[cfg.label_key]
    if labels.isna().any():
        raise UserError(f"{path}: obs '{cfg.label_key}' has {int(labels.isna().sum())} missing labels; drop or fill them")
    adata.obs["label"] = labels.astype(str).values
    if cfg.group_key is not None:
        if cfg.group_key not in adata.obs:
            raise UserError(f"{path}: expression.group_key '{cfg.group_key}' is not an obs column (have: {list(adata.obs.columns)})")
        adata.obs["group"] = adata.obs[cfg.group_key].astype(str).values
    if not adata.obs_names.is_unique:
        raise UserError(f"{path}: duplicate sample ids (obs names), e.g. {adata.obs_names[adata.obs_names.duplicated()][0]!r}")
    if not adata.var_names.is_unique:
        raise UserError(f"{path}: duplicate gene ids (var names), e.g. {adata.var_names[adata.var_names.duplicated()][0]!r}")


def _check_values(adata, cfg: Expression) -> None:
    import scipy.sparse as sp

    data = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.issubdtype(data.dtype, np.number):
        raise UserError(f"{cfg.path}: the expression matrix is not numeric (dtype {data.dtype})")
    if not np.isfinite(data).all():
        raise UserError(f"{cfg.path}: the expression matrix holds NaN or inf values; clean them before running")
    if not cfg.normalized and (data < 0).any():
        raise UserError(f"{cfg.path}: negative values in a matrix of counts; if the data are already normalised "
                        "set expression.normalized: true")


def read_gene_filter(path: str) -> set[str]:
    """Gene ids, one per line (or the first column of a CSV); ENSEMBL version suffixes are dropped."""
    ids = set()
    for line in Path(path).read_text().splitlines():
        token = line.split(",")[0].split("\t")[0].strip()
        if token and not token.startswith("#"):
            ids.add(strip_version(token))
    if not ids:
        raise UserError(f"{path}: the gene filter is empty")
    return ids


def strip_version(gene_id: str) -> str:
    """'ENSG00000141510.16' -> 'ENSG00000141510'; other ids unchanged."""
    head, dot, tail = gene_id.partition(".")
    return head if dot and head.startswith("ENS") and tail.isdigit() else gene_id
