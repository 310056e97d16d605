"""Layout pieces shared by the transforms that place genes on pixels (deepinsight, multichannel, fotomics).

A layout goes: training profiles -> 2-D gene coordinates (an embedding, or Fourier coordinates) -> the convex
hull's minimum-area bounding rectangle rotated upright and scaled onto the H x W grid (``fit_to_grid``) -> one
pixel per gene (``discretize``: ``bin``, ``qtb`` or ``lsa``) -> a ``PixelGeneMap``. Every function works for any
height and width, square or not (pyDeepInsight's assignment crashes or scrambles on non-square images).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.spatial import ConvexHull
from scipy.spatial.distance import cdist
from scipy.stats import rankdata

from shared.errors import UserError
from shared.genemap import PixelGeneMap
from shared.logs import get_logger

log = get_logger(__name__)

DISCRETIZATIONS = ("bin", "qtb", "lsa")


def training_profiles(train_values: np.ndarray, max_fit_samples: int, seed: int) -> np.ndarray:
    """(n_train, n_genes) -> the genes' profiles (n_genes, n_rows) over at most ``max_fit_samples`` training rows,
    a seeded subsample (kept in their original order) when there are more."""
    values = train_values
    if len(values) > max_fit_samples:
        rows = np.sort(np.random.default_rng(seed).choice(len(values), size=max_fit_samples, replace=False))
        values = values[rows]
    # no copy when the values are already float32 in Fortran order (their transpose is then C-ordered)
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32).T)


def embed_genes(profiles: np.ndarray, method: str, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """profiles: (n_genes, n_training_samples) -> (n_genes, 2) coordinates."""
    n = len(profiles)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(profiles)
    if method == "kpca":
        from sklearn.decomposition import KernelPCA

        return KernelPCA(n_components=2, kernel="rbf", random_state=seed).fit_transform(profiles)
    if method in ("tsne", "tsne_sklearn"):
        reduced = profiles
        if profiles.shape[1] > 50:  # PCA first, as scanpy and openTSNE do, to keep t-SNE fast on many samples
            from sklearn.decomposition import PCA

            reduced = PCA(n_components=50, random_state=seed).fit_transform(profiles)
        perp = min(perplexity, max(2.0, (n - 1) / 3))
        if method == "tsne_sklearn":  # the reference: scikit-learn's Barnes-Hut t-SNE, as pyDeepInsight runs it
            from sklearn.manifold import TSNE

            return TSNE(n_components=2, perplexity=perp, init="pca", metric="cosine", random_state=seed).fit_transform(
                reduced
            )
        return opentsne_embedding(reduced, perp, seed)
    if method == "umap":
        umap = import_umap()
        return umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(profiles)
    raise ValueError(f"unknown embedding {method!r}")


#: openTSNE settings of ``embedding: tsne`` (the rest are openTSNE's defaults: perplexity-based affinities on
#: Annoy neighbours, PCA initialisation, learning rate n/12, early exaggeration 12, 500 main iterations):
#: exaggeration 0.8 in the main phase spreads the genes more evenly (the attraction-repulsion spectrum, Boehm et
#: al. 2022; more genes on a pixel of their own), 150 early-exaggeration iterations (enough at learning rate n/12,
#: Belkina et al. 2019) and a coarser FFT grid (2 units per interval, at least 25; the grid otherwise grows with
#: the spread-out embedding and dominates the time). Measured by ``make bench`` (bench/layout.py) against
#: pyDeepInsight's scikit-learn t-SNE: trustworthiness and share of genes on their own pixel.
OPENTSNE = dict(exaggeration=0.8, early_exaggeration_iter=150, ints_in_interval=2, min_num_intervals=25)


def opentsne_embedding(reduced: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """openTSNE's t-SNE (``OPENTSNE``) of the rows of ``reduced``, cosine metric: FFT-interpolated repulsion from
    10,000 points up (Barnes-Hut below, openTSNE's "auto"), on every core this process may use. The same seed
    gives the same coordinates (tested)."""
    from openTSNE import TSNE

    n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        metric="cosine",
        initialization="pca",
        n_jobs=n_jobs,
        random_state=seed,
        verbose=False,
        **OPENTSNE,
    )
    return np.asarray(tsne.fit(np.ascontiguousarray(reduced, dtype=np.float64)), dtype=np.float64)


def import_umap():
    """umap-learn without Keras and TensorFlow. Its package imports ParametricUMAP (unused here) whenever Keras is
    installed, which loads TensorFlow and then torchvision; on this stack TensorFlow's libraries loaded before
    triton's crash the interpreter, and they cost seconds anyway. The import is made with TensorFlow and Keras
    blocked (shared.frameworks.kept_out), so umap takes its own fallback. Call it before anything that imports umap
    (scanpy's neighbours and UMAP)."""
    from shared.frameworks import kept_out

    with kept_out():
        import umap
    return umap


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
    coords = np.asarray(coords, dtype=np.float64)
    angle = _min_area_rotation(coords)
    c, s = np.cos(-angle), np.sin(-angle)
    xy = coords @ np.array([[c, -s], [s, c]]).T
    if (np.ptp(xy[:, 0]) >= np.ptp(xy[:, 1])) != (width >= height):
        xy = xy[:, ::-1]
    span = np.where(np.ptp(xy, axis=0) > 0, np.ptp(xy, axis=0), 1.0)
    unit = (xy - xy.min(axis=0)) / span
    return np.column_stack([unit[:, 1] * (height - 1), unit[:, 0] * (width - 1)])


def quantile_bins(v: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index 0..n_bins-1 of each value, cutting at the values' own quantiles: every bin receives about
    ``len(v) / n_bins`` values (exactly, when it divides and there are no ties; tied values share a bin)."""
    r = rankdata(v, method="average") - 1.0  # 0-based ranks, ties averaged
    return np.clip(np.floor(r * n_bins / len(v)), 0, n_bins - 1).astype(np.int64)


def discretize(
    rc: np.ndarray, height: int, width: int, method: str, key: str = "preprocess.deepinsight.discretization"
) -> np.ndarray:
    """(n_genes, 2) pixel coordinates (row, col) -> flat pixel index per gene (row * width + col).

    ``bin``: the nearest pixel (several genes may share one). ``qtb``: quantile binning as pyDeepInsight's 'qtb':
    rows are cut at the quantiles of the genes' row coordinates into ``height`` bins and columns at the quantiles
    of their column coordinates into ``width`` bins, so each row and each column holds about the same number of
    genes (genes may still share a pixel). ``lsa``: a linear sum assignment of genes to pixels minimising squared
    displacement, so each pixel holds at most one gene (needs n_genes <= height*width). ``key`` names the config
    field in error messages.
    """
    rc = np.asarray(rc, dtype=np.float64)
    if method == "bin":
        r = np.clip(np.rint(rc[:, 0]), 0, height - 1).astype(np.int64)
        c = np.clip(np.rint(rc[:, 1]), 0, width - 1).astype(np.int64)
        return r * width + c
    if method == "qtb":
        return quantile_bins(rc[:, 0], height) * width + quantile_bins(rc[:, 1], width)
    if method == "lsa":
        if len(rc) > height * width:
            raise UserError(
                f"{key}: lsa needs n_genes ({len(rc)}) <= height*width "
                f"({height * width}); enlarge the image or use bin or qtb"
            )
        rows, cols = np.mgrid[0:height, 0:width]
        centres = np.column_stack([rows.ravel(), cols.ravel()]).astype(np.float64)
        cost = cdist(rc, centres, "sqeuclidean")  # 15x faster than broadcasting, same values
        gene_idx, pixel_idx = linear_sum_assignment(cost)
        out = np.empty(len(rc), dtype=np.int64)
        out[gene_idx] = pixel_idx
        return out
    raise ValueError(f"unknown discretization {method!r}")


def layout_genes(
    coords: np.ndarray, height: int, width: int, discretization: str, key: str = "preprocess.deepinsight.discretization"
) -> tuple[np.ndarray, np.ndarray]:
    """2-D gene coordinates -> (flat pixel index per gene, (row, col) positions before discretisation)."""
    rc = fit_to_grid(coords, height, width)
    return discretize(rc, height, width, discretization, key), rc


def stack_channels(maps: list[PixelGeneMap]) -> PixelGeneMap:
    """Single-channel maps over the same genes -> one map whose channel c is ``maps[c]``."""
    _, h, w = maps[0].image_shape
    weights = sp.vstack([m.weights for m in maps]).tocsr()
    return PixelGeneMap(weights, (len(maps), h, w), maps[0].genes)


def log_layout(gmap: PixelGeneMap, what: str = "layout") -> None:
    per_pixel = gmap.genes_per_pixel()
    log.info(
        "%s: %d genes on %d of %d pixels (%d pixels shared by several genes)",
        what,
        len(gmap.genes),
        int((per_pixel > 0).sum()),
        per_pixel.size,
        int((per_pixel > 1).sum()),
    )
