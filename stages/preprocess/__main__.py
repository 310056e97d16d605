"""python -m stages.preprocess --config FILE: expression data -> images with the pixel->gene map."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from shared.artifacts import StageRun, write_json_atomic
from shared.errors import UserError
from shared.logs import get_logger, progress
from shared.stage import main

from .imagify import fit_deepinsight, to_uint8
from .loaders import read_expression, read_gene_filter, strip_version
from .normalize import MinMaxScaler, normalize_log1p, top_variance_genes
from .params import Expression, Preprocess
from .splits import holdout_split

log = get_logger("stages.preprocess")


def run(run: StageRun) -> None:
    exp = run.exp
    cfg: Expression = exp.section("expression")
    p: Preprocess = exp.section("preprocess")
    out = run.out

    adata = read_expression(cfg)
    log.info("read %s: %d samples x %d genes, %d classes", cfg.path, adata.n_obs, adata.n_vars, adata.obs["label"].nunique())
    if cfg.gene_filter:
        wanted = read_gene_filter(cfg.gene_filter)
        keep = np.array([strip_version(g) in wanted for g in adata.var_names])
        if not keep.any():
            raise UserError(f"{cfg.gene_filter}: no gene of the filter matches a gene id of {cfg.path}")
        adata = adata[:, keep].copy()
        log.info("gene filter kept %d genes", adata.n_vars)

    labels = adata.obs["label"].to_numpy()
    groups = adata.obs["group"].to_numpy() if "group" in adata.obs else None
    is_test = holdout_split(labels, groups, p.test_size, exp.seed)
    train = np.flatnonzero(~is_test)

    if not cfg.normalized:
        normalize_log1p(adata, p.target_sum)
    genes_idx = top_variance_genes(adata.X, train, p.n_genes)
    adata = adata[:, genes_idx].copy()
    scaler = MinMaxScaler.fit(adata.X, train)
    log.info("kept the %d most variable training genes", adata.n_vars)

    values = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=(adata.n_obs, adata.n_vars))
    for start in progress(range(0, adata.n_obs, p.chunk_size), "scale", unit="chunk"):
        values[start:start + p.chunk_size] = scaler.transform(adata.X[start:start + p.chunk_size])

    d = p.deepinsight
    gmap, rc = fit_deepinsight(values[train], adata.var_names.to_numpy(), p.height, p.width, d.embedding,
                               d.discretization, exp.seed, d.perplexity, d.max_fit_samples)
    images = np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=(adata.n_obs, *gmap.image_shape))
    for start in progress(range(0, adata.n_obs, p.chunk_size), "images", unit="chunk"):
        images[start:start + p.chunk_size] = to_uint8(gmap.render(values[start:start + p.chunk_size]))
    images.flush()
    values.flush()
    gmap.save(out / "pixel_genes.npz")

    classes = sorted(np.unique(labels))
    samples = pd.DataFrame({
        "sample": adata.obs_names, "label": labels, "label_index": [classes.index(x) for x in labels],
        "split": np.where(is_test, "test", "train"),
    })
    if groups is not None:
        samples["group"] = groups
    samples.to_csv(out / "samples.csv", index=False)

    pixel = np.asarray(gmap.weights.T.argmax(axis=1)).ravel()
    genes = pd.DataFrame({"gene": adata.var_names, "train_min": scaler.low, "train_max": scaler.high, "pixel": pixel,
                          "row": pixel // p.width, "col": pixel % p.width})
    if "symbol" in adata.var:
        genes.insert(1, "symbol", adata.var["symbol"].astype(str).to_numpy())
    genes.to_csv(out / "genes.csv", index=False)
    pd.DataFrame({"gene": adata.var_names, "row": rc[:, 0], "col": rc[:, 1]}).to_csv(out / "gene_coords.csv", index=False)

    counts = samples.groupby(["split", "label"]).size().unstack(fill_value=0)
    write_json_atomic(out / "dataset.json", {
        "classes": classes,
        "image_shape": list(gmap.image_shape),
        "n_genes": int(adata.n_vars),
        "transform": p.transform,
        "transductive": False,
        "gene_map": "pixel_genes.npz",
        "normalized_input": cfg.normalized,
        "label_key": cfg.label_key,
        "group_key": cfg.group_key,
        "counts": json.loads(counts.to_json()),
    })
    run.record(n_samples=int(adata.n_obs), n_train=int(len(train)), n_test=int(is_test.sum()))


if __name__ == "__main__":
    raise SystemExit(main("preprocess", run))
