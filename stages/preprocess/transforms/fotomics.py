"""``fotomics``: Fourier-transform gene coordinates, then the DeepInsight layout (Fotomics: Zandavi, Liu, Chung,
Anaissi and Vafaee, "Fotomics: Fourier transform-based omics imagification for deep learning-based cell-identity
mapping using single-cell omics profiles", Artif. Intell. Rev. 2023 / bioRxiv 10.1101/2022.07.08.499309; reference
code VafaeeLab/Fotomics-Imagification, ``FftTransformer.fft_fit``).

As published, the FFT runs along the *gene* axis of each training sample, not along a gene's profile over
samples: for every training sample x (a vector over the genes, in their fixed order) the spectrum
``fftshift(fft(x))`` is taken; its real and its imaginary parts are cleaned of outliers separately, per sample
(values at or beyond the 10th/90th percentiles -/+ 1.5 x their difference are set to 0; ``outliers: false``
skips this); both are averaged over the training samples. Gene i's 2-D coordinate is then (mean real part, mean
imaginary part) of the i-th (shifted) frequency component. The pairing of gene i with frequency i is positional,
exactly as in the published code, and because the FFT of a real vector is conjugate-symmetric the layout is
mirror-symmetric (components k and -k share a real part and have opposite imaginary parts).

The coordinates then go through the same convex hull, minimum-area rotation and discretisation as deepinsight
(``preprocess.fotomics.discretization``: ``lsa``, ``qtb`` or ``bin``; the published code bins each axis with
``np.digitize`` over equal-width bins, close to ``bin``). Image (1, H, W), any H and W. The coordinates depend on
the training values alone (a mean over the training rows, so not on their order), never on test samples.
"""

from __future__ import annotations

import numpy as np

from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .base import MapTransform
from .layout import layout_genes, log_layout

log = get_logger(__name__)

OUTLIER_PERCENTILES = (10.0, 90.0)  # the published bounds: [q10 - 1.5 (q90 - q10), q90 + 1.5 (q90 - q10)]


def _zero_outliers(a: np.ndarray) -> np.ndarray:
    """Per row (sample): values on or beyond the published bounds become 0."""
    q_lo, q_hi = np.percentile(a, OUTLIER_PERCENTILES, axis=1, keepdims=True)
    spread = 1.5 * (q_hi - q_lo)
    return np.where((a <= q_lo - spread) | (a >= q_hi + spread), 0.0, a)


def fourier_coordinates(train_values: np.ndarray, outliers: bool = True, chunk: int = 2048) -> np.ndarray:
    """Training values (n_train, n_genes) -> (n_genes, 2): the mean over training samples of the real and the
    imaginary part of each sample's shifted spectrum over the genes (Fotomics' ``fft_fit``)."""
    n, g = train_values.shape
    total = np.zeros((2, g))
    for start in range(0, n, chunk):
        x = np.asarray(train_values[start : start + chunk], dtype=np.float64)
        spectrum = np.fft.fftshift(np.fft.fft(x, axis=1), axes=1)
        for k, part in enumerate((spectrum.real, spectrum.imag)):
            total[k] += (_zero_outliers(part) if outliers else part).sum(axis=0)
    return (total / max(n, 1)).T


class Fotomics(MapTransform):
    name = "fotomics"

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        f = self.settings.fotomics
        h, w = self.settings.height, self.settings.width
        log.info("Fourier coordinates of %d genes from %d training samples", train_values.shape[1], len(train_values))
        coords = fourier_coordinates(train_values, f.outliers)
        pixel_of_gene, self.coords = layout_genes(coords, h, w, f.discretization, "preprocess.fotomics.discretization")
        self.gene_map = PixelGeneMap.from_assignment(pixel_of_gene, (1, h, w), genes)
        log_layout(self.gene_map, f"fotomics layout ({f.discretization})")

    def describe(self) -> dict:
        f = self.settings.fotomics
        return {**super().describe(), "discretization": f.discretization, "outliers": f.outliers}
