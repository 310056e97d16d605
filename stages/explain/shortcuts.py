"""The shortcut audit of one model (shared.evaluation.shortcuts): each method's top genes, and the model's own
predicted probabilities, against the class and each nuisance variable of the held-out test rows: the dataset's
group (donor, patient) and the covariates preprocess carried (expression.covariates; total_counts,
n_genes_by_counts). Every held-out row is used, whatever explain.correct_only says: the question is what the genes
carry in the data, not in the samples the model got right."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from shared.evaluation.shortcuts import audit, target_kind, top_gene_columns
from shared.logs import get_logger

from .inputs import ModelInputs
from .params import Shortcuts

log = get_logger(__name__)
#: held-out rows read at a time for the top genes' values
CHUNK = 4096


def nuisances(data: ModelInputs) -> pd.DataFrame:
    """The nuisance variables of ``data``'s rows: ``group`` when the dataset has groups, then the covariates."""
    table = pd.DataFrame(index=range(len(data.labels)))
    if "group" in data.samples:
        table["group"] = data.samples["group"].astype(str).to_numpy()
    if data.covariates is not None:
        for name in data.covariates.columns:
            table[name] = data.covariates[name].to_numpy()
    return table


def gene_values(data: ModelInputs, columns: np.ndarray) -> np.ndarray | None:
    """The held-out rows' values of the genes ``columns`` (the values the model's inputs were made from: vectors,
    or the gene values images were rendered from); None when they are not stored."""
    values = data.array if data.kind == "vector" else data.gene_values
    if values is None:
        return None
    return np.concatenate(
        [values[np.arange(s, min(s + CHUNK, len(values)))][:, columns] for s in range(0, len(values), CHUNK)]
    ).astype(np.float64)


def audit_model(data: ModelInputs, gene_means: dict[str, np.ndarray], settings: Shortcuts, seed: int) -> dict:
    """The model's shortcut entry: the nuisances and their kinds, ``predictions`` (the predicted probabilities as
    features), ``methods`` (each method's top genes as features), ``flagged`` ("what: nuisance" for each flag), or
    ``skipped`` with the reason."""
    start = time.perf_counter()
    table = nuisances(data)
    if table.empty or not len(table.columns):
        return {"skipped": "no nuisance variable: the dataset has no group and preprocess carried no covariates"}
    options = dict(permutations=settings.permutations, n_folds=settings.folds, alpha=settings.alpha, seed=seed)
    out: dict = {
        "nuisances": {name: target_kind(table[name]) for name in table.columns},
        "top_k": settings.top_k,
        "rows": int(len(table)),
        "predictions": audit(data.proba, data.labels, table, **options),
        "methods": {},
    }
    columns = {m: top_gene_columns(means, settings.top_k) for m, means in gene_means.items()}
    union = np.unique(np.concatenate(list(columns.values()))) if columns else np.zeros(0, int)
    values = gene_values(data, union) if len(union) else None
    if columns and values is None:
        out["methods_skipped"] = "the gene values the model read are not stored (preprocess.save_vectors)"
    elif values is not None:
        for method, cols in columns.items():
            out["methods"][method] = audit(values[:, np.searchsorted(union, cols)], data.labels, table, **options)
            out["methods"][method]["genes"] = int(len(cols))
    out["flagged"] = [f"predictions: {n}" for n in out["predictions"]["flags"]] + [
        f"{m}: {n}" for m, r in out["methods"].items() for n in r["flags"]
    ]
    out["seconds"] = round(time.perf_counter() - start, 3)
    for what in out["flagged"]:
        log.warning("shortcut audit: %s carries more %s than class", *what.split(": ", 1))
    return out
