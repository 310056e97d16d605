"""``deepinsight``: genes laid out in 2-D by an embedding of their training profiles (Sharma et al. 2019).

Genes (points) are embedded by t-SNE, UMAP, PCA or kernel PCA of their profiles over training samples; the
convex hull's minimum-area bounding rectangle is rotated upright and scaled onto the H x W grid; coordinates are
discretised by binning, quantile binning or linear sum assignment. The layout is fitted once and then applied
unchanged, sample by sample: a sample's image depends on its own values only.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import ConvexHull

from shared.errors import UserError
from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .base import MapTransform

log = get_logger(__name__)


def embed_genes(profiles: np.ndarray, method: str, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """profiles: (n_genes, n_training_samples) -> (n_genes, 2) coordinates."""
    n = len(profiles)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(profiles)
    if method == "kpca":
        from sklearn.decomposition import KernelPCA

        return KernelPCA(n_components=2, kernel="rbf", random_state=seed).fit_transform(profiles)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        reduced = profiles
        if profiles.shape[1] > 50:  # PCA first, as scanpy and openTSNE do, to keep t-SNE fast on many samples
            reduced = PCA(n_components=50, random_state=seed).fit_transform(profiles)
        perp = min(perplexity, max(2.0, (n - 1) / 3))
        return TSNE(n_components=2, perplexity=perp, init="pca", metric="cosine", random_state=seed).fit_transform(reduced)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(profiles)
    raise ValueError(f"unknown embedding {method!r}")


def _min_area_rotation(points: np.ndarray) -> float:
    """Angle that rotates the convex hull of ``points`` into its minimum-area axis-aligned bounding rectangle."""
    try:
        hull = points[ConvexHull(points).vertices]
    except Exception:  # degenerate (collinear) points: no rotation needed
        return 0.0
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    best, best_area = 0.0, np.inf
    for a in angles:
        c, s = np.cos(-a), np.sin(-a)
        rot = hull @ np.array([[c, -s], [s, c]]).T
        area = np.ptp(rot[:, 0]) * np.ptp(rot[:, 1])
        if area < best_area - 1e-12:
            best, best_area = a, area
    return best


def fit_to_grid(coords: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rotate onto the minimum bounding rectangle, put its long side along the image's long side, and scale to
    pixel coordinates: (n, 2) as (row, col) floats in [0, height-1] x [0, width-1]."""
    angle = _min_area_rotation(coords)
    c, s = np.cos(-angle), np.sin(-angle)
    xy = coords @ np.array([[c, -s], [s, c]]).T
    if (np.ptp(xy[:, 0]) >= np.ptp(xy[:, 1])) != (width >= height):
        xy = xy[:, ::-1]
    span = np.where(np.ptp(xy, axis=0) > 0, np.ptp(xy, axis=0), 1.0)
    unit = (xy - xy.min(axis=0)) / span
    return np.column_stack([unit[:, 1] * (height - 1), unit[:, 0] * (width - 1)])


def discretize(rc: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    """(n_genes, 2) pixel coordinates -> flat pixel index per gene.

    ``bin``: the nearest pixel (several genes may share one). ``lsa``: a linear sum assignment of genes to pixels
    minimising squared displacement, so each pixel holds at most one gene (needs n_genes <= height*width).
    """
    if method == "bin":
        r = np.clip(np.rint(rc[:, 0]), 0, height - 1).astype(np.int64)
        c = np.clip(np.rint(rc[:, 1]), 0, width - 1).astype(np.int64)
        return r * width + c
    if method == "lsa":
        if len(rc) > height * width:
            raise UserError(f"preprocess.deepinsight.discretization: lsa needs n_genes ({len(rc)}) <= height*width "
                            f"({height * width}); enlarge the image or use bin")
        rows, cols = np.mgrid[0:height, 0:width]
        centres = np.column_stack([rows.ravel(), cols.ravel()]).astype(np.float64)
        cost = ((rc[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        gene_idx, pixel_idx = linear_sum_assignment(cost)
        out = np.empty(len(rc), dtype=np.int64)
        out[gene_idx] = pixel_idx
        return out
    raise ValueError(f"unknown discretization {method!r}")


def fit_deepinsight(train_values: np.ndarray, genes, height: int, width: int, embedding: str, discretization: str,
                    seed: int, perplexity: float = 30.0, max_fit_samples: int = 5000):
    """Fit the DeepInsight layout on training values (n_train, n_genes) in [0, 1].

    Returns ``(PixelGeneMap, coords)`` where coords are the genes' (row, col) positions before discretisation.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(len(train_values))
    if len(rows) > max_fit_samples:
        rows = np.sort(rng.choice(rows, size=max_fit_samples, replace=False))
    profiles = np.ascontiguousarray(np.asarray(train_values[rows], dtype=np.float32).T)
    log.info("embedding %d genes by %s of %d training profiles", profiles.shape[0], embedding, profiles.shape[1])
    coords = embed_genes(profiles, embedding, seed, perplexity)
    rc = fit_to_grid(coords, height, width)
    pixel_of_gene = discretize(rc, height, width, discretization)
    gmap = PixelGeneMap.from_assignment(pixel_of_gene, (1, height, width), genes)
    shared = int((gmap.genes_per_pixel() > 1).sum())
    log.info("layout: %d genes on %d of %d pixels (%d pixels shared by several genes)",
             len(genes), int((gmap.genes_per_pixel() > 0).sum()), height * width, shared)
    return gmap, rc


class DeepInsight(MapTransform):
    name = "deepinsight"

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        d = self.params.deepinsight
        self.gene_map, self.coords = fit_deepinsight(train_values, genes, self.params.height, self.params.width,
                                                     d.embedding, d.discretization, seed, d.perplexity,
                                                     d.max_fit_samples)
