"""``deepinsight``: genes laid out in 2-D by an embedding of their training profiles (Sharma et al. 2019).

Genes (points) are embedded by t-SNE, UMAP, PCA or kernel PCA of their profiles over training samples; the
convex hull's minimum-area bounding rectangle is rotated upright and scaled onto the H x W grid (any size, square
or not); coordinates are discretised by binning (``bin``), quantile binning (``qtb``, pyDeepInsight's) or linear
sum assignment (``lsa``). The layout is fitted once and then applied unchanged, sample by sample: a sample's
image depends on its own values only. The layout pieces live in ``layout.py`` and are re-exported here.
"""

from __future__ import annotations

import numpy as np

from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .base import MapTransform
from .layout import discretize, embed_genes, fit_to_grid, layout_genes, log_layout, quantile_bins, training_profiles

log = get_logger(__name__)

__all__ = ["DeepInsight", "discretize", "embed_genes", "fit_deepinsight", "fit_to_grid", "quantile_bins"]


def fit_deepinsight(
    train_values: np.ndarray,
    genes,
    height: int,
    width: int,
    embedding: str,
    discretization: str,
    seed: int,
    perplexity: float = 30.0,
    max_fit_samples: int = 5000,
    key: str = "preprocess.deepinsight.discretization",
):
    """Fit the DeepInsight layout on training values (n_train, n_genes) in [0, 1].

    Returns ``(PixelGeneMap, coords)`` where coords are the genes' (row, col) positions before discretisation.
    """
    profiles = training_profiles(train_values, max_fit_samples, seed)
    log.info("embedding %d genes by %s of %d training profiles", profiles.shape[0], embedding, profiles.shape[1])
    coords = embed_genes(profiles, embedding, seed, perplexity)
    pixel_of_gene, rc = layout_genes(coords, height, width, discretization, key)
    gmap = PixelGeneMap.from_assignment(pixel_of_gene, (1, height, width), genes)
    log_layout(gmap, f"{embedding} layout ({discretization})")
    return gmap, rc


class DeepInsight(MapTransform):
    name = "deepinsight"

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        d = self.settings.deepinsight
        self.gene_map, self.coords = fit_deepinsight(
            train_values,
            genes,
            self.settings.height,
            self.settings.width,
            d.embedding,
            d.discretization,
            seed,
            d.perplexity,
            d.max_fit_samples,
        )

    def describe(self) -> dict:
        d = self.settings.deepinsight
        return {**super().describe(), "embedding": d.embedding, "discretization": d.discretization}
