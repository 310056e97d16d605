"""``gene-grid``: the TCGA method (prior art 3): the top n*n genes by training variance, ordered, reshaped n x n.

n = floor(sqrt(n_genes)) for the ``n_genes`` genes preprocess selected; the n*n of them with the largest
variance over the training values are kept (ties broken by gene order) and the remaining n_genes - n*n are on
no pixel (their columns of the pixel->gene map are empty; they receive no attribution). The kept genes are
ordered by

- ``order: permutation``: a permutation drawn from the experiment seed (the prior art drew an unseeded one, so
  its gene<->pixel map differed between training and inference);
- ``order: embedding``: the 1-D order of an embedding of their training profiles (``embedding: pca``, the first
  principal component; ``spectral``, a 1-D spectral embedding), so similar genes are neighbours along rows,

and written row by row into a (1, n, n) image. The image is n x n whatever ``preprocess.height``/``width`` say.
The order lives only in the pixel->gene map that is saved with the images, so training, inference and the
explanations can never use different orders. The prior art's per-image min-max scaling is not reproduced: pixels
are the training-scaled gene values themselves, so the map stays exact (pixel == its gene's value).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shared.errors import UserError
from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .base import MapTransform
from .layout import training_profiles

log = get_logger(__name__)


def grid_side(n_genes: int) -> int:
    return int(np.floor(np.sqrt(n_genes) + 1e-9))


def top_variance(train_values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k genes with the largest variance over the training rows, largest first (stable ties)."""
    var = np.asarray(train_values, dtype=np.float64).var(axis=0)
    return np.argsort(-var, kind="stable")[:k]


def order_1d(profiles: np.ndarray, method: str, seed: int) -> np.ndarray:
    """profiles (n_genes, n_samples) -> a 1-D coordinate per gene."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=1, random_state=seed).fit_transform(profiles)[:, 0]
    if method == "spectral":
        from sklearn.manifold import SpectralEmbedding

        n_neighbors = max(2, min(10, len(profiles) - 1))
        spectral = SpectralEmbedding(n_components=1, n_neighbors=n_neighbors, random_state=seed)
        return spectral.fit_transform(profiles)[:, 0]
    raise ValueError(f"unknown 1-D embedding {method!r}")


class GeneGrid(MapTransform):
    name = "gene-grid"

    def __init__(self, settings):
        super().__init__(settings)
        self.kept: np.ndarray | None = None  # gene indices in pixel order (row-major over the n x n grid)

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        g = self.settings.gene_grid
        genes = np.asarray(genes, dtype=str)
        n = grid_side(len(genes))
        if n < 2:
            raise UserError(f"preprocess.n_genes: gene-grid needs at least 4 genes, got {len(genes)}")
        kept = top_variance(train_values, n * n)
        if g.order == "permutation":
            kept = kept[np.random.default_rng(seed).permutation(len(kept))]
        else:
            profiles = training_profiles(np.asarray(train_values)[:, kept], g.max_fit_samples, seed)
            kept = kept[np.argsort(order_1d(profiles, g.embedding, seed), kind="stable")]
        self.kept = kept
        weights = sp.csr_matrix((np.ones(n * n), (np.arange(n * n), kept)), shape=(n * n, len(genes)))
        self.gene_map = PixelGeneMap(weights, (1, n, n), genes)
        if (self.settings.height, self.settings.width) != (n, n):
            log.info(
                "gene-grid images are %d x %d (floor(sqrt(%d genes))), not the configured %d x %d",
                n,
                n,
                len(genes),
                self.settings.height,
                self.settings.width,
            )
        log.info(
            "gene-grid: %d of %d genes on a %d x %d grid, ordered by %s",
            n * n,
            len(genes),
            n,
            n,
            "a seeded permutation" if g.order == "permutation" else f"1-D {g.embedding}",
        )

    def describe(self) -> dict:
        g = self.settings.gene_grid
        extra = {
            "order": g.order,
            "grid_side": int(self.gene_map.image_shape[1]) if self.gene_map else None,
            "n_genes_on_grid": int(len(self.kept)) if self.kept is not None else None,
        }
        if g.order == "embedding":
            extra["embedding"] = g.embedding
        return {**super().describe(), **extra}
