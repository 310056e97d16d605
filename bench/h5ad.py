"""A large synthetic .h5ad of counts, written chunk by chunk so that memory stays flat whatever the size.

Cells are drawn (with replacement) from a pool made by ``fixtures.synthetic.make_transcriptome`` (log-normal
library sizes, negative-binomial noise, planted class markers, donors), at a library size that leaves about
87% of the entries zero, as in droplet single-cell data. The pool is a CSR matrix; each chunk of cells is a row
selection of it, appended to the file's ``X/data`` and ``X/indices`` datasets with h5py, with ``X/indptr``
offset as it goes. obs (cell ids, ``tumour_state``, ``donor``) and var are written by anndata itself, so the
file is exactly what ``anndata.read_h5ad(path, backed='r')`` expects: X a ``csr_matrix`` group.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

CSR_ATTRS = {"encoding-type": "csr_matrix", "encoding-version": "0.1.0"}


def make_pool(n_cells: int, n_genes: int, library_size: float, seed: int):
    """(CSR float32 counts, labels, donors, gene ids) of ``n_cells`` synthetic cells."""
    import scipy.sparse as sp

    from fixtures.synthetic import make_transcriptome

    adata, _ = make_transcriptome(n_samples=n_cells, n_genes=n_genes, library_size=library_size, seed=seed)
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    X.sort_indices()
    return (
        X,
        adata.obs["tumour_state"].to_numpy().astype(str),
        adata.obs["donor"].to_numpy().astype(str),
        np.asarray(adata.var_names).astype(str),
    )


def write_counts_h5ad(
    path: str | Path,
    n_cells: int,
    n_genes: int = 2000,
    chunk_cells: int = 50_000,
    pool_cells: int = 20_000,
    library_size: float = 350.0,
    seed: int = 0,
) -> dict:
    """Write ``n_cells`` x ``n_genes`` counts (sparse CSR) to ``path`` atomically; return facts about the file."""
    import anndata as ad
    import h5py
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool, labels, donors, genes = make_pool(min(pool_cells, n_cells), n_genes, library_size, seed)
    rows = np.random.default_rng(seed + 1).integers(0, pool.shape[0], size=n_cells)

    width = len(str(n_cells - 1))
    obs = pd.DataFrame(
        {
            "tumour_state": pd.Categorical(labels[rows]),
            "donor": pd.Categorical(donors[rows]),
        },
        index=pd.Index([f"cell{i:0{width}d}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=pd.Index(genes))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    ad.AnnData(obs=obs, var=var).write_h5ad(tmp)  # obs, var, uns, ... in anndata's own encoding; no X yet
    del obs

    nnz = 0
    with h5py.File(tmp, "a") as f:
        group = f.create_group("X")
        for key, value in CSR_ATTRS.items():
            group.attrs[key] = value
        group.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        step = 1 << 20
        data = group.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(step,))
        indices = group.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(step,))
        indptr = group.create_dataset("indptr", shape=(n_cells + 1,), dtype=np.int64)
        indptr[0] = 0
        for start in range(0, n_cells, chunk_cells):
            stop = min(start + chunk_cells, n_cells)
            block = pool[rows[start:stop]]
            k = block.nnz
            data.resize((nnz + k,))
            indices.resize((nnz + k,))
            data[nnz : nnz + k] = block.data
            indices[nnz : nnz + k] = block.indices
            indptr[start + 1 : stop + 1] = block.indptr[1:].astype(np.int64) + nnz
            nnz += k
    os.replace(tmp, path)
    return {
        "path": str(path),
        "n_cells": n_cells,
        "n_genes": n_genes,
        "nnz": int(nnz),
        "zero_fraction": round(1.0 - nnz / (n_cells * n_genes), 4),
        "pool_cells": int(pool.shape[0]),
        "library_size": library_size,
        "bytes": path.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def input_facts(path: str | Path) -> dict:
    """Size and sparsity of an existing file (for a reused input)."""
    import h5py

    with h5py.File(path, "r") as f:
        n_cells, n_genes = (int(x) for x in f["X"].attrs["shape"])
        nnz = int(f["X/data"].shape[0])
    return {
        "path": str(path),
        "n_cells": n_cells,
        "n_genes": n_genes,
        "nnz": nnz,
        "zero_fraction": round(1.0 - nnz / (n_cells * n_genes), 4),
        "bytes": Path(path).stat().st_size,
        "reused": True,
    }


def verify_backed(path: str | Path, n_cells: int, n_genes: int, label_key: str = "tumour_state") -> dict:
    """Open the file as the stage does (backed, read-only) and read a few rows: a wrong layout fails here."""
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(path, backed="r")
    try:
        if adata.shape != (n_cells, n_genes):
            raise ValueError(f"{path}: shape {adata.shape}, expected {(n_cells, n_genes)}")
        head = adata.X[0 : min(1000, n_cells)]
        tail = adata.X[max(0, n_cells - 1000) : n_cells]
        if not (sp.issparse(head) and sp.issparse(tail)):
            raise ValueError(f"{path}: X is not read back as a sparse matrix")
        if label_key not in adata.obs:
            raise ValueError(f"{path}: obs has no '{label_key}' column")
        return {
            "backed_read": True,
            "x_type": type(adata.X).__name__,
            "head_nnz": int(head.nnz),
            "tail_nnz": int(tail.nnz),
        }
    finally:
        adata.file.close()
