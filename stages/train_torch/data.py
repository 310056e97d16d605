"""Feeding the memory-mapped uint8 images of preprocess to torch."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from shared.errors import UserError


def with_augmented(samples: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """``rows`` plus the augmented rows made from them (and only from them): augmented copies follow their
    source into its fold's training part and never into a validation fold."""
    source_ids = set(samples["sample"].to_numpy()[rows])
    augmented = np.flatnonzero(samples["augmented_from"].isin(source_ids).to_numpy())
    return np.concatenate([rows, augmented])


@dataclass
class ImageSet:
    images: np.ndarray        # (n_samples, channels, height, width) uint8, memory-mapped
    labels: np.ndarray        # (n_samples,) int64
    groups: np.ndarray | None
    split: np.ndarray         # (n_samples,) 'train' | 'test'
    samples: pd.DataFrame
    classes: list[str]
    dataset: dict


def load_image_set(folder: Path) -> ImageSet:
    dataset = json.loads((folder / "dataset.json").read_text())
    if dataset.get("transform") == "vector":
        raise UserError(f"{folder}: preprocess wrote vectors, not images; train_torch needs an image transform")
    images = np.load(folder / "images.npy", mmap_mode="r")
    samples = pd.read_csv(folder / "samples.csv", dtype={"sample": str, "label": str, "group": str,
                                                         "augmented_from": str})
    if "augmented_from" not in samples:
        samples["augmented_from"] = ""
    samples["augmented_from"] = samples["augmented_from"].fillna("")
    groups = samples["group"].to_numpy() if "group" in samples else None
    return ImageSet(images, samples["label_index"].to_numpy(np.int64), groups, samples["split"].to_numpy(), samples,
                    list(dataset["classes"]), dataset)


class MemmapImages(Dataset):
    """Rows of a memory-mapped uint8 array as float tensors in [0, 1]; batched reads via ``__getitems__``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray):
        self.images, self.labels, self.index = images, labels, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, idx: list[int]):
        rows = self.index[np.asarray(idx)]
        order = np.argsort(rows)  # sorted reads are sequential on disk
        x = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        x[order] = self.images[rows[order]]
        return list(zip(torch.from_numpy(x), torch.from_numpy(self.labels[rows])))


def make_loader(ds: ImageSet, index: np.ndarray, batch_size: int, shuffle: bool, seed: int, num_workers: int,
                pin_memory: bool = False) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(MemmapImages(ds.images, ds.labels, index), batch_size=batch_size, shuffle=shuffle,
                      generator=gen, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=lambda items: (torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])))


def channel_stats(images: np.ndarray, index: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the [0, 1] images over ``index`` (the training rows of a fold)."""
    total = np.zeros(images.shape[1])
    sq = np.zeros(images.shape[1])
    n = 0
    for start in range(0, len(index), chunk):
        x = images[np.sort(index[start:start + chunk])].astype(np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        sq += (x**2).sum(axis=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 1e-12))
    return mean.tolist(), std.tolist()
