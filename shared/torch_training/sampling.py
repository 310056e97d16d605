"""Samplers whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


class EpochShuffle(Sampler):
    """A permutation that depends only on (seed, epoch), so a resumed run sees the same batches.

    Under DistributedDataParallel each rank takes every world-th item of each global batch, so the union of the
    ranks' batches is exactly the single-process batch.
    """

    def __init__(
        self, n: int, seed: int, batch_size: int, weights: np.ndarray | None = None, rank: int = 0, world: int = 1
    ):
        self.n, self.seed, self.batch_size, self.weights = n, seed, batch_size, weights
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.weights is not None:  # WeightedRandomSampler's draw, seeded per epoch
            p = self.weights / self.weights.sum()
            return rng.choice(self.n, size=self.n, replace=True, p=p)
        return rng.permutation(self.n)

    def __iter__(self):
        order = self._order()
        for start in range(0, self.n, self.batch_size):
            yield from order[start : start + self.batch_size][self.rank :: self.world].tolist()

    def __len__(self) -> int:
        return sum(
            len(range(self.rank, min(self.batch_size, self.n - s), self.world))
            for s in range(0, self.n, self.batch_size)
        )


def class_balanced_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights that make every class equally likely under a weighted sampler."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[labels]
