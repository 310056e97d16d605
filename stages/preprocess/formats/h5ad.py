"""AnnData (.h5ad) files, as scanpy and anndata write them: X (dense or sparse), obs with the label (and group)
columns, var_names the genes."""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError

from ..params import Expression
from ..textfiles import first_line
from .tables import check_values


def read(expression: Expression):
    import anndata as ad

    path = Path(expression.path)
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for truncated or foreign files
        raise UserError(
            f"{path}: cannot read as .h5ad ({type(exc).__name__}: {first_line(exc)}); is the file complete?"
        ) from None
    if expression.use_raw:
        if adata.raw is None:
            raise UserError(f"{path}: expression.use_raw is true but the file has no .raw")
        adata = ad.AnnData(X=adata.raw.X, obs=adata.obs, var=adata.raw.var)
    elif expression.layer is not None:
        if expression.layer not in adata.layers:
            raise UserError(f"{path}: expression.layer '{expression.layer}' not found (layers: {list(adata.layers)})")
        adata = ad.AnnData(X=adata.layers[expression.layer], obs=adata.obs, var=adata.var)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(f"{path}: empty matrix ({adata.n_obs} samples x {adata.n_vars} genes)")
    check_values(adata.X, adata.obs_names, adata.var_names, path, expression.negatives_ok, axes=("sample", "gene"))
    return adata
