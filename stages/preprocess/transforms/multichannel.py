"""``multichannel``: three embeddings of the same gene profiles, one per channel (pyDeepInsight's MRep idea).

Each channel is a full DeepInsight layout of all genes (``preprocess.multichannel.embeddings``, e.g. t-SNE, PCA
and kernel PCA of the genes' training profiles), with its own hull, rotation and discretisation onto the same
H x W grid. The image is (3, H, W); the single pixel->gene map covers all 3*H*W pixels, so every gene sits on
one pixel in each channel and an attribution returns to a gene from all three.
"""

from __future__ import annotations

import numpy as np

from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .base import MapTransform
from .layout import embed_genes, layout_genes, log_layout, stack_channels, training_profiles

log = get_logger(__name__)


class Multichannel(MapTransform):
    name = "multichannel"

    def __init__(self, settings):
        super().__init__(settings)
        self.channel_coords: np.ndarray | None = None  # (channels, n_genes, 2) (row, col) before discretisation

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        m = self.settings.multichannel
        h, w = self.settings.height, self.settings.width
        profiles = training_profiles(train_values, m.max_fit_samples, seed)
        maps, coords = [], []
        for c, embedding in enumerate(m.embeddings):
            log.info(
                "channel %d: embedding %d genes by %s of %d training profiles",
                c,
                profiles.shape[0],
                embedding,
                profiles.shape[1],
            )
            xy = embed_genes(profiles, embedding, seed, m.perplexity)
            pixel_of_gene, rc = layout_genes(xy, h, w, m.discretization, "preprocess.multichannel.discretization")
            maps.append(PixelGeneMap.from_assignment(pixel_of_gene, (1, h, w), genes))
            coords.append(rc)
            log_layout(maps[-1], f"channel {c} ({embedding}, {m.discretization})")
        self.gene_map = stack_channels(maps)
        self.channel_coords = np.stack(coords)
        # gene_coords.csv holds one (row, col) per gene: no single position stands for three channels
        self.coords = None

    def describe(self) -> dict:
        m = self.settings.multichannel
        return {**super().describe(), "embeddings": list(m.embeddings), "discretization": m.discretization}
