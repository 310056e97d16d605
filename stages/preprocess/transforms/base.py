"""The transform interface: fitted on training values, then applied unchanged to any samples."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from shared.genemap import PixelGeneMap

from ..render import MapRenderer


class Transform:
    """Scaled gene values (n_samples, n_genes) in [0, 1] -> images (n_samples, C, H, W) float32 in [0, 1].

    Inductive transforms (``transductive = False``) are fitted on training values only (``fit``) and then map
    each sample on its own (``transform``). A transductive transform has no ``transform``: it needs every sample
    at once (``fit_all``, then ``render`` by rows), so new samples cannot be imaged without refitting.
    """

    name: ClassVar[str]
    transductive: ClassVar[bool] = False
    makes_images: ClassVar[bool] = True

    def __init__(self, settings):
        self.settings = settings
        self.gene_map: PixelGeneMap | None = None
        self.coords: np.ndarray | None = None  # (n_genes, 2) positions before discretisation, when there are any

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        raise NotImplementedError

    def transform(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Images of ``values`` as float32 in [0, 1], or quantised to uint8 (``dtype=np.uint8``, what the stage
        stores)."""
        raise NotImplementedError

    def fit_all(self, values: np.ndarray, seed: int) -> None:
        """Transductive transforms: fit on every sample (train and test) at once."""
        raise NotImplementedError(f"{self.name} is inductive: use fit and transform")

    def render(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Transductive transforms: images of the fitted samples ``rows``."""
        raise NotImplementedError(f"{self.name} is inductive: use fit and transform")

    def fit_transform_all(self, values: np.ndarray, seed: int) -> np.ndarray:
        self.fit_all(values, seed)
        return self.render()

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return None if self.gene_map is None else self.gene_map.image_shape

    def describe(self) -> dict:
        """What dataset.json records about the transform."""
        return {"transform": self.name, "transductive": self.transductive, "has_gene_map": self.gene_map is not None}


class MapTransform(Transform):
    """A transform defined by a pixel->gene map: ``image = values @ weights.T`` (see shared.genemap), rendered by
    ``MapRenderer`` (one gather per sample, quantised on the fly)."""

    _renderer: MapRenderer | None = None

    def transform(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        if self._renderer is None or self._renderer.gene_map is not self.gene_map:
            self._renderer = MapRenderer(self.gene_map)
        return self._renderer(values, dtype)
