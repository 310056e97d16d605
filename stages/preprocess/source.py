"""The expression matrix as a source of row chunks: backed (.h5ad read lazily) or in memory (other formats)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from shared.errors import UserError

from .formats import read_expression
from .formats.tables import check_obs, check_values
from .params import Expression


def open_expression(expression: Expression):
    """Return ``(adata, backed)``. A plain .h5ad (X, no layer/raw) is opened backed: rows are read in chunks."""
    if expression.format != "h5ad" or expression.layer is not None or expression.use_raw:
        return read_expression(expression), False
    import anndata as ad

    try:
        adata = ad.read_h5ad(expression.path, backed="r")
    except Exception as exc:  # h5py raises many types for truncated or foreign files
        raise UserError(
            f"{expression.path}: cannot read as .h5ad ({type(exc).__name__}: {exc}); is the file complete?"
        ) from None
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(f"{expression.path}: empty matrix ({adata.n_obs} samples x {adata.n_vars} genes)")
    check_obs(adata, expression, source=expression.path)
    return adata, True


def iter_chunks(adata, chunk_size: int, expression: Expression, backed: bool) -> Iterator[tuple[int, int, object]]:
    """Yield ``(start, stop, X[start:stop])``; chunks of a backed file have their values checked as they come."""
    for start in range(0, adata.n_obs, chunk_size):
        stop = min(start + chunk_size, adata.n_obs)
        X = adata.X[start:stop]
        if backed:
            check_values(X, adata.obs_names[start:stop], adata.var_names, expression.path, expression.negatives_ok)
        yield start, stop, X


def sample_rows(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, drawn without replacement and sorted (for sequential reads)."""
    if len(rows) <= limit:
        return np.sort(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
