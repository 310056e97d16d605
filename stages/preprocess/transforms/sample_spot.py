"""``sample-spot``: the brain-tumour paper's sample image, reproduced as published (prior art 1: Alyatimi et al.
2025, MAKE 7(4):119). Transductive, and no pixel is a gene.

Over ALL samples at once (training and test together), scanpy-style: PCA with ``n_pcs`` (50) components
(``sc.pp.pca``), a ``n_neighbors`` (15) neighbour graph on them (``sc.pp.neighbors``), a 2-D UMAP
(``sc.tl.umap``) and a 2-D t-SNE (``sc.tl.tsne``, perplexity 30) of the samples, every step seeded. Each sample
becomes a black ``size`` x ``size`` (128) RGB image with one ``spot`` x ``spot`` (7) square at its own t-SNE
(x, y) position (x along the columns, y up as in a scatter plot, both scaled so the square lies inside the
image), coloured (t-SNE dim 1, PC 1, UMAP dim 1), each min-max scaled to [0, 1] over all samples.

The input is the selected, normalised, training-scaled gene values preprocess hands every transform (the paper
ran scanpy on its own normalised matrix). Because the embedding sees the test samples, a test image is not
independent of the other samples and a new sample cannot be imaged without refitting everything: this is the
prior art's protocol, kept as a named option so it can be compared, not the pipeline's default. Component counts,
neighbours and perplexity are capped for very small inputs (PCA needs n_pcs < min(samples, genes)).
"""

from __future__ import annotations

import numpy as np

from shared.errors import UserError
from shared.logs import get_logger

from .base import Transform
from .layout import import_umap

log = get_logger(__name__)
TSNE_PERPLEXITY = 30.0  # scanpy's default, which the paper kept


def _unit(v: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] over all samples (a constant becomes 0)."""
    v = np.asarray(v, dtype=np.float64)
    span = np.ptp(v)
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def embed_samples(values: np.ndarray, n_pcs: int, n_neighbors: int, seed: int) -> dict[str, np.ndarray]:
    """All samples (n, n_genes) -> {"pca": (n, k), "umap": (n, 2), "tsne": (n, 2)}, with scanpy, seeded."""
    import anndata as ad
    import scanpy as sc

    n, g = values.shape
    if n < 4 or g < 2:
        raise UserError(f"preprocess.transform: sample-spot needs at least 4 samples and 2 genes, got {n} x {g}")
    k = max(1, min(n_pcs, n - 1, g - 1))
    if k < n_pcs:
        log.info("sample-spot: %d principal components instead of %d (%d samples x %d genes)", k, n_pcs, n, g)
    adata = ad.AnnData(np.asarray(values, dtype=np.float32))
    import_umap()  # umap-learn loaded without Keras/TensorFlow before scanpy's neighbours import it
    sc.pp.pca(adata, n_comps=k, random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=min(n_neighbors, n - 1), n_pcs=k, random_state=seed)
    sc.tl.umap(adata, n_components=2, random_state=seed)
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (n - 1) / 3.0))
    sc.tl.tsne(adata, n_pcs=k, perplexity=perplexity, random_state=seed)
    return {
        "pca": np.asarray(adata.obsm["X_pca"]),
        "umap": np.asarray(adata.obsm["X_umap"]),
        "tsne": np.asarray(adata.obsm["X_tsne"]),
    }


class SampleSpot(Transform):
    name = "sample-spot"
    transductive = True

    def __init__(self, settings):
        super().__init__(settings)
        s = settings.sample_spot
        if s.spot > s.size:
            raise UserError(f"preprocess.sample_spot.spot ({s.spot}) must not exceed size ({s.size})")
        self.colours: np.ndarray | None = None  # (n, 3) RGB in [0, 1]: t-SNE 1, PC 1, UMAP 1
        self.spots: np.ndarray | None = None  # (n, 2) (row, col) of each square's top-left pixel

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.settings.sample_spot.size
        return (3, size, size)

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        raise NotImplementedError("sample-spot is transductive: use fit_transform_all on every sample")

    def fit_all(self, values: np.ndarray, seed: int) -> None:
        """Embed every sample and fix each one's square (position and colour)."""
        s = self.settings.sample_spot
        log.info(
            "sample-spot: PCA (%d), %d-neighbour graph, UMAP and t-SNE of all %d samples",
            s.n_pcs,
            s.n_neighbors,
            len(values),
        )
        emb = embed_samples(values, s.n_pcs, s.n_neighbors, seed)
        tsne = emb["tsne"]
        self.colours = np.column_stack([_unit(tsne[:, 0]), _unit(emb["pca"][:, 0]), _unit(emb["umap"][:, 0])])
        room = s.size - s.spot
        col = np.rint(_unit(tsne[:, 0]) * room)
        row = np.rint((1.0 - _unit(tsne[:, 1])) * room)  # y up, as the t-SNE scatter plot shows it
        self.spots = np.column_stack([row, col]).astype(np.int64)

    def render(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Images of the fitted samples ``rows`` (default all): (n, 3, size, size) float32 in [0, 1]."""
        s = self.settings.sample_spot
        idx = np.arange(len(self.spots))[rows if rows is not None else slice(None)]
        images = np.zeros((len(idx), 3, s.size, s.size), dtype=np.float32)
        for i, j in enumerate(idx):
            r, c = self.spots[j]
            images[i, :, r : r + s.spot, c : c + s.spot] = self.colours[j][:, None, None]
        return images

    def fit_transform_all(self, values: np.ndarray, seed: int) -> np.ndarray:
        self.fit_all(values, seed)
        return self.render()

    def describe(self) -> dict:
        s = self.settings.sample_spot
        return {
            **super().describe(),
            "n_pcs": s.n_pcs,
            "n_neighbors": s.n_neighbors,
            "spot": s.spot,
            "size": s.size,
            "channels": ["tsne_1", "pc_1", "umap_1"],
        }
