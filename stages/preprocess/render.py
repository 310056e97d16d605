"""Expression values -> images through a pixel->gene map, in one pass per sample.

``PixelGeneMap.render`` (shared/genemap.py) is the definition: ``image = values @ weights.T``. This module
computes the same images for the stage, faster. The map is a short list of (pixel, gene, weight) entries (one
per gene and channel); for each sample, in parallel over samples with numba, the entries are visited in gene order
(sequential reads of the sample's values) and accumulate ``weight * value`` into a pixel buffer small enough to
stay in the L1 cache, which is then written out as float32 or, what the stage stores, quantised to uint8 on the
fly (``floor(255 v + 0.5)`` clipped to 0..255, the same rule as ``to_uint8``). No float image of a chunk is
materialised, and the sums over a shared pixel run in the same (gene) order as the sparse product's, so both give
the same floats. The sparse product writes a float32 image and quantising it is a second pass: on a machine whose
memory bandwidth is the limit, that costs more than the product.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from shared.genemap import PixelGeneMap


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 0..255, rounding halves up (as the render kernel does)."""
    return np.clip(np.floor(np.asarray(images, dtype=np.float32) * np.float32(255.0) + np.float32(0.5)), 0, 255).astype(
        np.uint8
    )


@njit(parallel=True, boundscheck=False)
def _render(X, pixel, gene, weight, out, quantise):
    n, n_pixels = out.shape
    for i in prange(n):
        x, o = X[i], out[i]
        acc = np.zeros(n_pixels, np.float32)
        for e in range(len(gene)):
            acc[pixel[e]] += weight[e] * x[gene[e]]
        if quantise:
            for p in range(n_pixels):
                o[p] = min(max(acc[p] * np.float32(255.0) + np.float32(0.5), np.float32(0.0)), np.float32(255.0))
        else:
            for p in range(n_pixels):
                o[p] = acc[p]


class MapRenderer:
    """``renderer(values, dtype)``: (n_samples, n_genes) scaled values -> (n_samples, C, H, W) images."""

    def __init__(self, gene_map: PixelGeneMap):
        self.gene_map = gene_map
        coo = gene_map.weights.tocoo()
        order = np.lexsort((coo.row, coo.col))  # by gene, then pixel
        self.pixel = coo.row[order].astype(np.int64)
        self.gene = coo.col[order].astype(np.int64)
        self.weight = coo.data[order].astype(np.float32)
        self.image_shape = gene_map.image_shape
        self.n_pixels, self.n_genes = gene_map.weights.shape

    def __call__(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise ValueError(f"images are float32 or uint8, not {dtype}")
        X = np.ascontiguousarray(values, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_genes:
            raise ValueError(f"values {X.shape} do not match the map's {self.n_genes} genes")
        out = np.empty((len(X), self.n_pixels), dtype=dtype)
        _render(X, self.pixel, self.gene, self.weight, out, dtype == np.uint8)
        return out.reshape((len(X), *self.image_shape))
