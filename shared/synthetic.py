"""Synthetic fixtures with planted ground truth, so that explanations can be scored.

``transcriptome``: counts (samples x genes) with log-normal library sizes, negative-binomial noise (and hence
realistic sparsity), several classes of unequal size, donor effects, and class-specific marker genes whose
expression is raised ``fold_change``-fold in their class. Written as ``.h5ad`` (obs: label, donor; var: symbol)
plus ``markers.csv`` (columns class, gene): the ground truth that explain scores itself against.

Run: ``python -m shared.synthetic transcriptome --out data/demo``
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

STATES = ("AC-like", "MES-like", "NPC-like", "OPC-like", "Cycling", "Hybrid")
REFERENCE = "Non-malignant"


def make_transcriptome(
    n_samples: int = 1000,
    n_genes: int = 2000,
    n_classes: int = 4,
    n_markers: int = 10,
    n_donors: int = 20,
    fold_change: float = 8.0,
    library_size: float = 4000.0,
    dispersion: float = 0.3,
    shared_program: float = 0.3,
    donor_sd: float = 0.05,
    shared_level: float = 2.0,
    seed: int = 0,
):
    """Return ``(adata, markers)``: an AnnData of raw counts and a DataFrame (class, gene) of planted markers.

    Class sizes are unequal (proportions 1, 1/1.5, 1/2.25, ... normalised). Markers are disjoint between classes
    and drawn from moderately expressed genes, so they are neither trivially huge nor lost in the zeros.
    A fraction ``shared_program`` of samples also runs another class's marker program at a lower level
    (``shared_level``-fold), as cell states share programs in real tumours; so a class cannot be recognised merely by
    the absence of the other classes' markers, and its own markers carry the signal.

    Besides the ``n_classes`` marked classes there is one reference class (``Non-malignant``) with no markers of its
    own, the largest class (non-malignant immune and stromal cells are a large share of most tumour samples, and a
    class defined by the absence of every program needs examples enough to be learnt; as the smallest class, with a
    dozen test samples, it made macro-F1 swing by 0.05 with the batch order). In a closed world of marked classes only, a model may recognise one of them by the absence of all the
    others, and then that class's own markers are legitimately not what drove its predictions; the reference class
    makes "none of the programs" a class of its own, so that the planted markers are the right ground truth.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    if n_classes > len(STATES):
        raise ValueError(f"at most {len(STATES)} classes")
    if n_classes * n_markers > n_genes // 2:
        raise ValueError("too many markers for the number of genes")
    rng = np.random.default_rng(seed)
    classes = [*STATES[:n_classes], REFERENCE]

    weights = 1.5 ** -np.arange(n_classes + 1)
    sizes = np.floor(weights / weights.sum() * n_samples).astype(int)
    sizes[0] += n_samples - sizes.sum()
    # the reference class is the largest (sizes[0]), the marked classes follow in decreasing size
    labels = np.repeat(np.roll(np.arange(n_classes + 1), 1), sizes)
    rng.shuffle(labels)

    base = rng.lognormal(mean=0.0, sigma=1.4, size=n_genes)
    base /= base.sum()
    order = np.argsort(base)
    moderate = order[n_genes // 4: n_genes * 3 // 4]  # between the 25th and 75th percentile of expression
    marker_idx = rng.choice(moderate, size=(n_classes, n_markers), replace=False)
    fold = np.ones((n_samples, n_genes))
    marked = np.flatnonzero(labels < n_classes)
    fold[marked[:, None], marker_idx[labels[marked]]] = fold_change
    sharing = np.flatnonzero(rng.random(n_samples) < shared_program)
    # another class's program: any marked class but the sample's own
    other = (labels[sharing] + rng.integers(1, n_classes + 1, size=len(sharing))) % (n_classes + 1)
    other = np.where(other == n_classes, (labels[sharing] + 1) % n_classes, other)
    other = np.where(other == labels[sharing], (other + 1) % n_classes, other)
    fold[sharing[:, None], marker_idx[other]] = shared_level

    donors = rng.integers(0, n_donors, size=n_samples)
    donor_effect = rng.lognormal(0.0, donor_sd, size=(n_donors, n_genes))

    lib = rng.lognormal(np.log(library_size), 0.45, size=n_samples)
    prop = base[None, :] * fold * donor_effect[donors]
    prop /= prop.sum(axis=1, keepdims=True)
    mean = lib[:, None] * prop
    shape = 1.0 / dispersion
    counts = rng.poisson(rng.gamma(shape, mean / shape)).astype(np.float32)

    genes = np.array([f"GENE{i:05d}" for i in range(n_genes)])
    obs = pd.DataFrame({
        "tumour_state": pd.Categorical([classes[i] for i in labels], categories=classes),
        "donor": [f"donor{d:02d}" for d in donors],
    }, index=[f"sample{i:05d}" for i in range(n_samples)])
    var = pd.DataFrame({"symbol": [f"SYM{i}" for i in range(n_genes)]}, index=genes)
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    markers = pd.DataFrame([(classes[c], genes[g]) for c in range(n_classes) for g in marker_idx[c]],
                           columns=["class", "gene"])
    return adata, markers


def write_transcriptome(out: str | Path, **kwargs) -> tuple[Path, Path]:
    """Write ``expression.h5ad`` and ``markers.csv`` under ``out`` atomically (temporary names, then rename)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata, markers = make_transcriptome(**kwargs)
    h5, csv = out / "expression.h5ad", out / "markers.csv"
    tmp_h5, tmp_csv = out / f".expression.h5ad.tmp-{os.getpid()}", out / f".markers.csv.tmp-{os.getpid()}"
    adata.write_h5ad(tmp_h5)
    markers.to_csv(tmp_csv, index=False)
    os.replace(tmp_csv, csv)
    os.replace(tmp_h5, h5)
    return h5, csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.synthetic", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    tx = sub.add_parser("transcriptome", help="counts with planted class markers (.h5ad + markers.csv)")
    tx.add_argument("--out", required=True)
    tx.add_argument("--n-samples", type=int, default=1000)
    tx.add_argument("--n-genes", type=int, default=2000)
    tx.add_argument("--n-classes", type=int, default=4)
    tx.add_argument("--n-markers", type=int, default=10)
    tx.add_argument("--n-donors", type=int, default=20)
    tx.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    h5, csv = write_transcriptome(args.out, n_samples=args.n_samples, n_genes=args.n_genes, n_classes=args.n_classes,
                                  n_markers=args.n_markers, n_donors=args.n_donors, seed=args.seed)
    print(f"wrote {h5} and {csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
