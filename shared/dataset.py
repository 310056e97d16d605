"""The dataset hand-off: the folder the ``dataset`` role provides (preprocess writes it), read by the trainers,
explain and report through this module only, so each file has one writer and one reader.

Files, relative to the provider's folder (``outputs/<experiment>/preprocess/``):

- ``samples.csv``: one row per sample, in the arrays' row order: ``sample`` (id, text), ``label`` (text),
  ``label_index`` (into ``classes``), ``split`` (``train`` | ``test``), ``group`` (optional: a donor or patient,
  never cut by a split) and ``augmented_from`` (the training sample an augmented copy was made from; empty for a
  measured sample).
- ``covariates.csv``: one row per row of ``samples.csv``, in its order: ``sample``, then each column named in
  dataset.json's ``covariates`` (sample metadata such as batch, sex or sequencing centre, as text, empty where
  missing), then the QC covariates preprocess computed from the matrix as read (``total_counts``, the library size,
  for counts; ``n_genes_by_counts``, the genes above zero, for every scale but normalized). Augmented copies have
  empty covariates and no QC values. What explain's shortcut audit tests the model's genes against (with
  ``group``); datasets written before it have no such file.
- ``dataset.json``: ``classes`` and what the arrays hold (transform, image shape, genes, the input scale, the
  label and group keys, the covariates named, the class counts per split, the small-class policy).
- ``images.npy`` (n, C, H, W) uint8 and ``vectors.npy`` (n, n_genes) float32 in [0, 1], each when made.
- ``genes.csv``: ``gene`` in ``vectors.npy``'s column order (optional ``symbol``, the pixel, the training scaling).
- ``pixel_genes.npz``: the pixel->gene map (``shared.genemap.PixelGeneMap``), for transforms that have one.
- ``layouts/<name>/images.npy`` and ``layouts/<name>/pixel_genes.npz`` (and ``gene_coords.csv``): the same samples
  through another layout of the same genes (``preprocess.layout_sensitivity``: another seed, or another embedding),
  recorded in dataset.json's ``layouts`` {name: seed, embedding, genes_moved (share of genes on another pixel than
  in the main layout), the files}; the key is absent when there are none. A model trained on one reads it through
  ``model_input(..., gene_layout=name)``.

A volume dataset (train_3d_mri writes one, ``outputs/<experiment>/train_3d_mri/``) has the same ``samples.csv``
(one row per exam; ``tumour_mask``: whether the exam has a tumour segmentation) and ``dataset.json``, and:

- ``volumes.npy`` (n, C, D, H, W) float16: the exams on the model's grid, normalised as ``model.json`` says.
- ``masks.npy`` (n, 2, D, H, W) uint8: channel 0 the brain (1 inside), channel 1 the tumour segmentation's labels
  as the release writes them (BraTS: 1 necrotic core, 2 oedema, 3 or 4 enhancing; 0 outside the tumour).
- ``grids.npz``: ``model_affine`` (n, 4, 4), each exam's grid in the model's space, and ``native_affine`` (n, 4, 4)
  and ``native_shape`` (n, 3), its own scan's grid, to return maps to it (``shared.nifti``).

A trained model's ``model.json`` points at these files through its ``input`` spec (``model_input``); explain reads
a model's inputs from that spec, so a model can read a dataset that is not its trainer's.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import write_json_atomic
from .errors import UserError

SAMPLES = "samples.csv"
INFO = "dataset.json"
IMAGES = "images.npy"
VECTORS = "vectors.npy"
GENES = "genes.csv"
COVARIATES = "covariates.csv"
GENE_MAP = "pixel_genes.npz"
VOLUMES = "volumes.npy"
MASKS = "masks.npy"
GRIDS = "grids.npz"
LAYOUTS = "layouts"
#: the channels of masks.npy
MASK_CHANNELS = ("brain", "tumour")

#: samples.csv's text columns: ids and labels stay text ('001' stays '001', 'NA' stays a label)
TEXT_COLUMNS = ("sample", "label", "group", "augmented_from")


def read_samples(path: str | Path) -> pd.DataFrame:
    """samples.csv as every reader sees it: the text columns as text, ``augmented_from`` always present ('' for a
    measured sample), ``group`` only when the dataset has groups."""
    samples = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False, na_values=[])
    if "augmented_from" not in samples:
        samples["augmented_from"] = ""
    return samples


def write_samples(path: str | Path, samples: pd.DataFrame) -> None:
    missing = {"sample", "label", "label_index", "split"} - set(samples)
    assert not missing, f"samples.csv needs {sorted(missing)}"
    samples.to_csv(path, index=False)


def write_covariates(path: str | Path, covariates: pd.DataFrame) -> None:
    """covariates.csv: ``sample`` first, then the covariates; missing values are written as empty cells."""
    assert list(covariates.columns[:1]) == ["sample"], "covariates.csv starts with the sample column"
    covariates.to_csv(path, index=False)


def read_covariates(path: str | Path, named: list[str], samples: pd.DataFrame) -> pd.DataFrame:
    """covariates.csv as every reader sees it: ``sample`` and the ``named`` covariates as text ('' where missing:
    'NA' stays a value), every other column (the QC covariates) as float64 with NaN where missing; its rows checked
    to be ``samples``' rows."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    for column in table.columns:
        if column != "sample" and column not in named:
            table[column] = pd.to_numeric(table[column].replace("", np.nan)).astype(np.float64)
    if list(table["sample"]) != list(samples["sample"].astype(str)):
        raise UserError(
            f"{path}: its rows are not those of {SAMPLES} beside it ({len(table)} vs {len(samples)} rows); the "
            "dataset folder is inconsistent: run preprocess again"
        )
    return table


def measured(samples: pd.DataFrame) -> np.ndarray:
    """Which rows are measured samples, not augmented copies (a table without ``augmented_from`` has no copies)."""
    if "augmented_from" not in samples:
        return np.ones(len(samples), bool)
    return samples["augmented_from"].fillna("").to_numpy() == ""


def measured_training_rows(samples: pd.DataFrame) -> np.ndarray:
    """The training split's measured samples (augmented copies left out): what the folds split, what a method
    compares with, what differential expression is computed on."""
    return np.flatnonzero((samples["split"] == "train").to_numpy() & measured(samples))


def test_rows(samples: pd.DataFrame) -> np.ndarray:
    """The held-out test split's rows (never augmented)."""
    return np.flatnonzero(samples["split"].to_numpy() == "test")


def write_info(folder: Path, info: dict[str, Any]) -> None:
    assert "classes" in info, "dataset.json needs its classes"
    write_json_atomic(folder / INFO, info)


def read_info(folder: Path) -> dict[str, Any]:
    return json.loads((folder / INFO).read_text())


@dataclass
class Dataset:
    """A provider's dataset folder, read: ``info`` (dataset.json) and ``samples`` (samples.csv) at once, the arrays,
    the genes and the map on demand (the arrays memory-mapped)."""

    folder: Path
    info: dict[str, Any]
    samples: pd.DataFrame

    @classmethod
    def open(cls, folder: Path) -> Dataset:
        return cls(folder, read_info(folder), read_samples(folder / SAMPLES))

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def labels(self) -> np.ndarray:
        return self.samples["label_index"].to_numpy(np.int64)

    @property
    def split(self) -> np.ndarray:
        return self.samples["split"].to_numpy()

    @property
    def groups(self) -> np.ndarray | None:
        return self.samples["group"].to_numpy() if "group" in self.samples else None

    def _array(self, name: str) -> np.ndarray | None:
        path = self.folder / name
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def images(self) -> np.ndarray | None:
        return self._array(IMAGES)

    def vectors(self) -> np.ndarray | None:
        return self._array(VECTORS)

    def volumes(self) -> np.ndarray | None:
        return self._array(VOLUMES)

    def covariates(self) -> pd.DataFrame | None:
        """covariates.csv in samples.csv's row order (``read_covariates``): ``sample``, the named covariates (text),
        the QC covariates (float64; NaN for augmented copies), or None for a dataset written before preprocess
        wrote it."""
        path = self.folder / COVARIATES
        if not path.is_file():
            return None
        return read_covariates(path, list(self.info.get("covariates") or []), self.samples)

    def genes(self) -> pd.DataFrame | None:
        path = self.folder / GENES
        return pd.read_csv(path, dtype={"gene": str, "symbol": str}) if path.is_file() else None

    def layouts(self) -> dict[str, dict[str, Any]]:
        """The other layouts of the layout-sensitivity check (dataset.json's ``layouts``): name -> seed, embedding,
        genes_moved and the files, relative to this folder; {} when there are none."""
        return dict(self.info.get(LAYOUTS) or {})

    def copy_layout_map_to(self, name: str, folder: Path) -> None:
        """A trainer keeps the map of a layout its models were trained through beside them (as ``copy_map_to``)."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.folder / self.layouts()[name]["gene_map"], folder / GENE_MAP)

    def gene_map_path(self) -> Path | None:
        """The pixel->gene map's file (read with ``shared.genemap.PixelGeneMap.load``), or None without one."""
        path = self.folder / GENE_MAP
        return path if path.is_file() else None

    def copy_map_to(self, folder: Path) -> None:
        """A trainer keeps the map its models were trained through (and dataset.json) beside them."""
        for name in (GENE_MAP, INFO):
            if (self.folder / name).is_file():
                shutil.copy2(self.folder / name, folder / name)

    def model_input(
        self,
        kind: str,
        trainer: str | None = None,
        provider: str | None = None,
        gene_layout: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The ``input`` spec of a model reading this dataset (paths relative to the experiment folder, which holds
        the dataset's folder): ``vector`` reads vectors.npy as it is, ``image`` reads images.npy scaled by 1/255,
        with the map the ``trainer`` stage copied beside its models and the gene values the images were made from;
        ``volume`` reads volumes.npy as it is, with its masks and grids. ``provider``: the folder's name once
        published (a stage describing its own outputs while writing them). ``gene_layout``: an image model trained
        on one of the other gene->pixel layouts (``layouts``) reads that layout's images, with its map copied by the
        trainer to ``<trainer>/layouts/<layout>/`` (``layout`` in ``extra`` is another thing: train_tf_gradcam's
        memory layout, channels last)."""
        rel = provider or self.folder.name
        name = {"vector": VECTORS, "image": IMAGES, "volume": VOLUMES}[kind]
        if gene_layout is not None:
            assert kind == "image", "only images have other layouts"
            name = self.layouts()[gene_layout]["images"]
        array = self._array(name)
        assert array is not None, f"{self.folder}: no {name}"
        spec: dict[str, Any] = {
            "kind": kind,
            "spatial_dims": array.ndim - 2,
            "array": f"{rel}/{name}",
            "dtype": str(array.dtype),
            "scale": 1 / 255 if array.dtype == np.uint8 else 1.0,
            "samples": f"{rel}/{SAMPLES}",
        }
        if kind == "volume":
            spec.update(masks=f"{rel}/{MASKS}", mask_channels=list(MASK_CHANNELS), grids=f"{rel}/{GRIDS}")
        else:
            spec["features"] = f"{rel}/{GENES}"
        if kind == "image" and trainer is not None and self.info.get("gene_map"):
            spec["gene_map"] = (
                f"{trainer}/{GENE_MAP}" if gene_layout is None else f"{trainer}/{LAYOUTS}/{gene_layout}/{GENE_MAP}"
            )
        if gene_layout is not None:
            spec["gene_layout"] = gene_layout
        if kind == "image" and self.info.get("vectors"):
            spec["gene_values"] = f"{rel}/{self.info['vectors']}"
        return spec | extra
