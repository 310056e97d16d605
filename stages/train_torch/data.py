"""Feeding the memory-mapped arrays of preprocess (uint8 images or float32 vectors) to torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shared.dataset import Dataset as PreparedDataset
from shared.errors import UserError
from shared.torch_training.sampling import EpochShuffle


@dataclass
class PreparedData:
    """The dataset (shared.dataset) as train_torch reads it, its arrays opened once; the samples, labels, classes
    and dataset.json are read through ``source``."""

    source: PreparedDataset
    images: np.ndarray | None  # (n_samples, channels, height, width) uint8, memory-mapped
    vectors: np.ndarray | None  # (n_samples, n_genes) float32 in [0, 1], memory-mapped

    def inputs(self, arch: str, layout: str | None = None) -> np.ndarray:
        """The array a model reads: vectors for the dense network, images for the rest (another ``layout``'s images
        for the layout-sensitivity check's models)."""
        if layout is not None:
            return np.load(self.source.folder / self.source.layouts()[layout]["images"], mmap_mode="r")
        if arch == "dense":
            if self.vectors is None:
                raise UserError("train_torch.models: 'dense' needs preprocess.save_vectors: true")
            return self.vectors
        if self.images is None:
            raise UserError(
                f"train_torch.models: '{arch}' needs images; "
                f"preprocess.transform is '{self.source.info.get('transform')}'"
            )
        return self.images


def load_prepared(folder: Path) -> PreparedData:
    ds = PreparedDataset.open(folder)
    return PreparedData(ds, ds.images(), ds.vectors())


class MemmapRows(Dataset):
    """Rows of a memory-mapped array; batched reads via ``__getitems__`` (sorted, so reads are sequential)."""

    def __init__(self, array: np.ndarray, labels: np.ndarray, index: np.ndarray):
        self.array, self.labels, self.index = array, labels, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, idx: list[int]):
        rows = self.index[np.asarray(idx)]
        order = np.argsort(rows)
        x = np.empty((len(rows), *self.array.shape[1:]), dtype=self.array.dtype)
        x[order] = self.array[rows[order]]
        return torch.from_numpy(x), torch.from_numpy(self.labels[rows])


def _collate(batch):
    return batch  # __getitems__ already returns stacked (x, y)


def make_loader(
    array: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    batch_size: int,
    *,
    sampler: EpochShuffle | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of (x, y); ``x`` keeps the array's dtype (uint8 images are scaled on the device). A training loader
    (``sampler`` set) leaves out an epoch's last batch when it would hold a single sample: batch normalisation has
    nothing to normalise where the network's maps are 1 x 1 (ResNet-18 on a 12 x 12 image), and the per-epoch
    shuffle gives every sample its turn."""
    per_rank = batch_size if sampler is None else max(1, batch_size // sampler.world)
    # decided on the global batches, so that every rank of a distributed run leaves out the same (last) step
    one_left = sampler is not None and sampler.n > sampler.batch_size and sampler.n % sampler.batch_size == 1
    return DataLoader(
        MemmapRows(array, labels, index),
        batch_size=per_rank,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_collate,
        drop_last=one_left,
    )


def input_stats(
    array: np.ndarray, index: np.ndarray, scale: float = 1.0, chunk: int = 4096
) -> tuple[list[float], list[float]]:
    """Mean and std of the model's inputs (``array * scale``) over ``index`` (a fold's training rows): per channel
    for images and volumes (n, C, *spatial), per feature for vectors (n, features)."""
    axes = (0, *range(2, array.ndim))
    total = np.zeros(array.shape[1])
    sq = np.zeros(array.shape[1])
    n = 0
    for start in range(0, len(index), chunk):
        x = array[np.sort(index[start : start + chunk])].astype(np.float64) * scale
        total += x.sum(axis=axes)
        sq += (x**2).sum(axis=axes)
        n += x.size // array.shape[1]
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    return mean.tolist(), np.where(std > 1e-6, std, 1.0).tolist()
