"""``vector``: no image; the normalised, scaled gene vector itself, for the dense network."""

from __future__ import annotations

import numpy as np

from .base import Transform


class Vector(Transform):
    name = "vector"
    makes_images = False

    def fit(self, train_values: np.ndarray, genes: np.ndarray, seed: int) -> None:
        return None
