"""What explain reads of a model: its held-out test inputs (``ModelInputs``, found through the model's spec), the
rows of them a check uses (``subset``), the training samples some methods compare with (``background``), the
genes' symbols, and the model under explanation with what its methods share (``ExplainedModel``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shared.dataset import COVARIATES, measured_training_rows, read_info, read_samples, test_rows
from shared.dataset import read_covariates as dataset_covariates
from shared.genemap import PixelGeneMap

from .attributions import to_tensor
from .store import LazyRows


class ModelInputs:
    """The held-out test inputs a model reads, found through its spec (``model.json``'s ``input``; paths relative
    to the experiment folder): the stored array (its test rows, read when indexed) and its scaling, the samples, for
    genes the names, the pixel->gene map and the gene values the images were rendered from, and for volumes the
    masks and grids. ``take(rows)`` keeps some of the samples."""

    def __init__(self, exp_dir: Path, spec: dict):
        inp = spec["input"]
        self.kind, self.scale = inp["kind"], float(inp.get("scale", 1.0))
        samples = read_samples(exp_dir / inp["samples"])
        rows = test_rows(samples)
        self.samples = samples.iloc[rows].reset_index(drop=True)
        self.labels = samples["label_index"].to_numpy()[rows]
        # read a chunk of rows at a time (explain_method), so the test split's size does not bound memory
        self.array = LazyRows(exp_dir / inp["array"], rows)
        # the training samples as measured (not augmented copies): the reference distribution of some methods
        self._training = (exp_dir / inp["array"], measured_training_rows(samples))
        self._backgrounds: dict = {}
        self.gmap = PixelGeneMap.load(exp_dir / inp["gene_map"]) if inp.get("gene_map") else None
        self.gene_values = LazyRows(exp_dir / inp["gene_values"], rows) if inp.get("gene_values") else None
        features = exp_dir / inp["features"] if inp.get("features") else None
        # genes.csv: gene (in column order) and, for images, the pixel (row, col) each gene sits on
        self.genes_table = (
            pd.read_csv(features, dtype={"gene": str}) if features is not None and features.is_file() else None
        )
        self.features = None if self.genes_table is None else self.genes_table["gene"].to_numpy()
        self.proba: np.ndarray | None = None
        # volumes (shared.dataset's volume layout): the brain and tumour masks, each exam's grids, the channel names
        self.masks = LazyRows(exp_dir / inp["masks"], rows) if inp.get("masks") else None
        self.has_mask = (
            samples["tumour_mask"].to_numpy(bool)[rows] if "tumour_mask" in samples else np.ones(len(rows), bool)
        )
        self.grids = None
        if inp.get("grids"):
            with np.load(exp_dir / inp["grids"]) as grids:
                self.grids = {k: grids[k][rows] for k in grids.files}
        self.channels = inp.get("channels")
        # the nuisance variables preprocess carried (covariates.csv beside samples.csv; None for older datasets)
        self.covariates = read_covariates(exp_dir / inp["samples"], samples, rows)

    def take(self, rows: np.ndarray) -> ModelInputs:
        out = copy.copy(self)
        out.samples = self.samples.iloc[rows].reset_index(drop=True)
        out.labels, out.array = self.labels[rows], self.array.take(rows, axis=0)
        out.gene_values = None if self.gene_values is None else self.gene_values.take(rows, axis=0)
        out.proba = None if self.proba is None else self.proba[rows]
        out.masks = None if self.masks is None else self.masks.take(rows, axis=0)
        out.has_mask = self.has_mask[rows]
        out.grids = None if self.grids is None else {k: v[rows] for k, v in self.grids.items()}
        out.covariates = None if self.covariates is None else self.covariates.iloc[rows].reset_index(drop=True)
        return out

    def tensors(self, rows: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's inputs and the true classes of ``rows``, on the device."""
        return (to_tensor(self.array[rows], device, self.scale), torch.from_numpy(self.labels[rows]).to(device))

    def background(self, n: int, seed: int, device) -> torch.Tensor:
        """``n`` training samples drawn at random (seeded; all of them when there are fewer), as model inputs."""
        key = (n, seed, str(device))
        if key not in self._backgrounds:
            path, rows = self._training
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False))
            self._backgrounds[key] = to_tensor(LazyRows(path, rows)[np.arange(len(rows))], device, self.scale)
        return self._backgrounds[key]

    def predict(self, model, device, batch: int = 256) -> np.ndarray:
        # at most ``batch`` samples, and at most 2**27 input values (512 MB as float32: a few volumes) a batch
        batch = max(1, min(batch, 2**27 // max(1, int(np.prod(self.array.file_shape[1:])))))
        with torch.no_grad():
            self.proba = np.concatenate(
                [
                    torch.softmax(model(to_tensor(self.array[s : s + batch], device, self.scale)).float(), 1)
                    .cpu()
                    .numpy()
                    for s in range(0, len(self.array), batch)
                ]
            )
        return self.proba

    @property
    def gene_names(self) -> np.ndarray | None:
        """Genes the attributions can be returned to (None: they stay in image space)."""
        if self.kind == "vector":
            return self.features
        return None if self.gmap is None else self.gmap.genes

    def to_genes(self, attr: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, ...) attributions (of all samples, or of ``rows``) -> (n, n_genes): as they are for vectors, through
        the map for images; without genes, the flattened input elements."""
        if self.kind == "vector" or self.gene_names is None:
            return attr.reshape(len(attr), -1)
        values = None if self.gene_values is None else self.gene_values[slice(None) if rows is None else rows]
        return self.gmap.gene_attributions(attr, values)


def read_covariates(samples_path: Path, samples: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame | None:
    """The ``rows`` of the dataset's covariates.csv (``shared.dataset.read_covariates``: the named covariates as
    text, the QC ones as numbers) without its ``sample`` column; None when the dataset has none."""
    folder = samples_path.parent
    if not (folder / COVARIATES).is_file():
        return None
    named = list(read_info(folder).get("covariates") or [])
    return (
        dataset_covariates(folder / COVARIATES, named, samples).drop(columns="sample").iloc[rows].reset_index(drop=True)
    )


@dataclass(frozen=True)
class ExplainedModel:
    """One trained model under explanation and what every method of it shares: its name, the held-out inputs it is
    explained on and their classes, the planted markers its rankings are scored against (None without), the device
    and seed of the attributions, and ``cache``: what the trust checks compute once per model (the random order's
    faithfulness curves, the reference of every method)."""

    model: torch.nn.Module
    name: str
    data: ModelInputs
    classes: list[str]
    markers: dict[str, set[str]] | None
    device: torch.device
    seed: int
    cache: dict = field(default_factory=dict)


def subset(labels: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` rows, taking the classes in turn (their first samples first), so every class is represented."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rows: list[int] = []
    while len(rows) < min(n, len(labels)):
        for members_c in by_class:
            if members_c and len(rows) < n:
                rows.append(members_c.pop(0))
    return np.sort(np.asarray(rows, dtype=int))


def symbols_of(data: ModelInputs, gene_names) -> np.ndarray | None:
    """The genes' symbols when genes.csv has them in the order of ``gene_names``."""
    table = data.genes_table
    if (
        table is None
        or "symbol" not in table
        or len(table) != len(gene_names)
        or not (table["gene"].astype(str).to_numpy() == np.asarray(gene_names).astype(str)).all()
    ):
        return None
    return table["symbol"].astype(str).to_numpy()
