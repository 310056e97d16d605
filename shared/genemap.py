"""The pixel->gene map: which genes make up each pixel of an expression image, and with what weight.

Written by preprocess (``pixel_genes.npz``) and read by every consumer of images: a model's attribution image is
only meaningful through the exact map used at training time.

The map is a sparse matrix ``weights: (n_pixels, n_genes)`` over flattened ``(channels, height, width)`` pixels.
A pixel's value is the weighted sum of its genes' scaled values, ``image = values @ weights.T``; each non-empty
row sums to 1, so a pixel shared by several genes holds their mean (pyDeepInsight's convention) and a pixel with
one gene holds that gene. Attributions go back to genes in proportion to each gene's contribution to the pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import UserError


@dataclass(frozen=True)
class PixelGeneMap:
    weights: sp.csr_matrix  # (n_pixels, n_genes)
    image_shape: tuple[int, int, int]  # (channels, height, width)
    genes: np.ndarray  # (n_genes,) str

    def __post_init__(self):
        n_pixels = int(np.prod(self.image_shape))
        if self.weights.shape != (n_pixels, len(self.genes)):
            raise ValueError(
                f"weights {self.weights.shape} do not match image {self.image_shape} x {len(self.genes)} genes"
            )

    @classmethod
    def from_assignment(cls, pixel_of_gene: np.ndarray, image_shape: tuple[int, int, int], genes) -> PixelGeneMap:
        """Each gene sits on one flat pixel index; genes sharing a pixel get equal weights (their mean)."""
        pixel_of_gene = np.asarray(pixel_of_gene, dtype=np.int64)
        n_pixels = int(np.prod(image_shape))
        counts = np.bincount(pixel_of_gene, minlength=n_pixels).astype(np.float64)
        data = 1.0 / counts[pixel_of_gene]
        weights = sp.csr_matrix(
            (data, (pixel_of_gene, np.arange(len(pixel_of_gene)))), shape=(n_pixels, len(pixel_of_gene))
        )
        return cls(weights, tuple(int(s) for s in image_shape), np.asarray(genes, dtype=str))

    # -- I/O (no pickles: plain arrays) --------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        w = self.weights.tocsr()
        np.savez_compressed(
            path,
            data=w.data,
            indices=w.indices,
            indptr=w.indptr,
            image_shape=np.asarray(self.image_shape),
            genes=self.genes.astype(str),
        )

    @classmethod
    def load(cls, path: str | Path) -> PixelGeneMap:
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(s) for s in z["image_shape"])
                genes = z["genes"]
                weights = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(int(np.prod(shape)), len(genes)))
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{path}: not a readable pixel->gene map ({exc})") from None
        return cls(weights, shape, genes)

    # -- use -----------------------------------------------------------------------------------------------
    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.image_shape))

    @cached_property
    def _render_matrix(self) -> sp.csr_matrix:
        # (n_genes, n_pixels) float32 CSR: ``values @ it`` is C-ordered float32 with no transposing copy
        return self.weights.T.tocsr().astype(np.float32)

    def render(self, values: np.ndarray) -> np.ndarray:
        """values: (n_samples, n_genes) in [0, 1] -> images (n_samples, channels, height, width) float32."""
        flat = np.asarray(np.asarray(values, dtype=np.float32) @ self._render_matrix)
        return flat.reshape((len(values), *self.image_shape))

    def genes_per_pixel(self) -> np.ndarray:
        """(channels, height, width) count of genes on each pixel."""
        return np.diff(self.weights.indptr).reshape(self.image_shape)

    def gene_attributions(self, attributions: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Pixel attributions -> gene attributions, conserving each pixel's total.

        attributions: (n_samples, channels, height, width); values: (n_samples, n_genes) scaled gene values used
        to render those images. A gene receives ``attr[p] * w[p,g] * x[g] / pixel[p]`` from every pixel it is on:
        its share of what that pixel showed. Without values (or where a pixel is 0) the share is ``w[p,g]``.
        Returns (n_samples, n_genes).
        """
        attr = np.asarray(attributions, dtype=np.float64).reshape(len(attributions), -1)
        w = self.weights
        if values is None:
            return np.asarray(w.T @ attr.T).T
        x = np.asarray(values, dtype=np.float64)
        pixel = np.asarray(w @ x.T).T  # (n, P)
        lit = pixel > 0
        ratio = np.divide(attr, pixel, out=np.zeros_like(attr), where=lit)
        shared = x * np.asarray(w.T @ ratio.T).T
        dark = np.asarray(w.T @ np.where(lit, 0.0, attr).T).T
        return shared + dark

    def pixel_table(self):
        """A long table of (channel, row, col, gene, weight) rows, for people and spreadsheets."""
        import pandas as pd

        coo = self.weights.tocoo()
        c, r, col = np.unravel_index(coo.row, self.image_shape)
        return pd.DataFrame({"channel": c, "row": r, "col": col, "gene": self.genes[coo.col], "weight": coo.data})
