"""The layout-sensitivity check's part in preprocess (``preprocess.layout_sensitivity``): the gene->pixel layout
re-fitted on the same training subsample with other seeds (seed+1 .. seed+layouts) and, for deepinsight, one other
embedding; every sample is rendered through each in pass 2, beside the main images, as ``layouts/<name>/``.

A layout is an arbitrary choice (a t-SNE's seed, the embedding): a model's conclusions about genes should not depend
on it. Each layout is recorded in dataset.json's ``layouts`` with how many genes it moved off their main pixel, so a
re-fit that lands on the main layout again (PCA has no seed) is seen as such and not read as robustness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared import dataset
from shared.genemap import PixelGeneMap
from shared.logs import get_logger

from .params import Preprocess
from .transforms import Transform, build_transform

log = get_logger("stages.preprocess")


def variant_settings(settings: Preprocess, seed: int) -> dict[str, tuple[Preprocess, int, str | None]]:
    """name -> (the settings the layout is fitted with, its seed, its embedding when the check changed it):
    ``seed<s>`` for each other seed, then ``<embedding>`` (at the experiment's seed)."""
    ls = settings.layout_sensitivity
    out: dict[str, tuple[Preprocess, int, str | None]] = {
        f"seed{seed + i}": (settings, seed + i, None) for i in range(1, ls.layouts + 1)
    }
    if ls.embedding is not None:
        other = settings.model_copy(
            update={"deepinsight": settings.deepinsight.model_copy(update={"embedding": ls.embedding})}
        )
        out[ls.embedding] = (other, seed, ls.embedding)
    return out


def genes_moved(main: PixelGeneMap, other: PixelGeneMap) -> float:
    """Share of the genes whose pixels (in any channel) differ between two maps of the same genes."""
    a, b = (main.weights != 0).tocsc(), (other.weights != 0).tocsc()
    diff = (a != b).tocsc()
    return float((np.diff(diff.indptr) > 0).mean())


def fit_layouts(
    settings: Preprocess, values: np.ndarray, genes: np.ndarray, seed: int, main: Transform
) -> dict[str, tuple[Transform, dict]]:
    """Each other layout fitted on the training values the main one was fitted on: name -> (fitted transform, its
    dataset.json entry without the files)."""
    out = {}
    for name, (variant, s, embedding) in variant_settings(settings, seed).items():
        transform = build_transform(variant)
        transform.fit(values, genes, s)
        moved = genes_moved(main.gene_map, transform.gene_map)
        if moved == 0:
            log.warning(
                "preprocess.layout_sensitivity: layout %s puts every gene on its main pixel (the %s layout does not "
                "change with the seed): it tests retraining only",
                name,
                settings.transform,
            )
        else:
            log.info("layout %s: %.0f%% of the genes on another pixel than in the main layout", name, 100 * moved)
        entry = {"seed": s, "embedding": embedding or main.describe().get("embedding"), "genes_moved": moved}
        out[name] = (transform, entry)
    return out


def layout_folder(out: Path, name: str) -> Path:
    folder = out / dataset.LAYOUTS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_layout(out: Path, name: str, transform: Transform, genes: np.ndarray) -> dict:
    """A layout's map (and gene positions) under ``layouts/<name>/``; returns the files dataset.json records
    (relative to the dataset folder)."""
    folder = layout_folder(out, name)
    transform.gene_map.save(folder / dataset.GENE_MAP)
    files = {
        "images": f"{dataset.LAYOUTS}/{name}/{dataset.IMAGES}",
        "gene_map": f"{dataset.LAYOUTS}/{name}/{dataset.GENE_MAP}",
    }
    if transform.coords is not None:
        pd.DataFrame({"gene": genes, "row": transform.coords[:, 0], "col": transform.coords[:, 1]}).to_csv(
            folder / "gene_coords.csv", index=False
        )
        files["gene_coords"] = f"{dataset.LAYOUTS}/{name}/gene_coords.csv"
    return files
