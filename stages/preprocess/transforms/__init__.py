"""Expression vectors -> images, one named transform per module, selected by ``preprocess.transform``.

Every transform follows ``base.Transform``: fitted on training values, applied unchanged to new samples, and
(when it places genes on pixels) carrying the pixel->gene map that attributions are read through.

- ``deepinsight``: an embedding of the genes' training profiles, hull/rotation, ``bin``/``qtb``/``lsa`` (1, H, W)
- ``multichannel``: three such embeddings, one per channel (3, H, W)
- ``gene-grid``: the TCGA grid: the n*n most variable genes in a seeded (or embedding) order, (1, n, n)
- ``fotomics``: Fourier coordinates of the genes (published Fotomics), then the same layout (1, H, W)
- ``sample-spot``: transductive, no gene map: one coloured square per sample at its t-SNE position (3, 128, 128)
- ``vector``: no image
The shared layout pieces (embeddings, hull and rotation, discretisations) are in ``layout.py``.
"""

from __future__ import annotations

from ..render import to_uint8
from .base import Transform
from .deepinsight import DeepInsight
from .fotomics import Fotomics
from .gene_grid import GeneGrid
from .multichannel import Multichannel
from .sample_spot import SampleSpot
from .vector import Vector

TRANSFORMS: dict[str, type[Transform]] = {
    t.name: t for t in (DeepInsight, Multichannel, GeneGrid, Fotomics, SampleSpot, Vector)
}


def build_transform(settings) -> Transform:
    """The transform named by ``settings.transform`` (a ``Preprocess`` config section), unfitted."""
    return TRANSFORMS[settings.transform](settings)


__all__ = ["TRANSFORMS", "Transform", "build_transform", "to_uint8"]
