"""From per-sample gene attributions to class rankings, and their precision against known markers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

log = get_logger("shared.evaluation.rankings")


def class_means(values: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, ...) values -> (n_classes, ...) means over the samples of each class (NaN where a class is absent)."""
    out = np.full((n_classes, *values.shape[1:]), np.nan, dtype=np.float64)
    for c in range(n_classes):
        rows = labels == c
        if rows.any():
            out[c] = values[rows].mean(axis=0)
    return out


def top_genes(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """genes x classes table -> long table (class, rank, gene, score) of each class's top ``k`` genes."""
    rows = []
    for cls in table.columns:
        col = table[cls].dropna().sort_values(ascending=False, kind="stable")
        for rank, (gene, score) in enumerate(col.head(k).items(), start=1):
            rows.append((cls, rank, gene, float(score)))
    return pd.DataFrame(rows, columns=["class", "rank", "gene", "score"])


def class_key(name: str) -> str:
    """A class name compared without case, spaces or punctuation: the label table's 'Whole Blood' and the data's
    'whole_blood' (GTEx tissues renamed after the prior art) are one class."""
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())


def gene_lookup(genes, symbols=None) -> dict[str, list[str]]:
    """How biologists may name the data's genes -> the data's gene ids: each id names itself; where the data has
    symbols (GTEx, GDC and TCGA keyed by Ensembl or SYMBOL|Entrez ids), a symbol names every gene that carries it."""
    lookup: dict[str, list[str]] = {}
    ids = np.asarray(genes).astype(str)
    for g in ids:
        lookup.setdefault(g, [g])
    if symbols is not None:
        by_symbol: dict[str, list[str]] = {}
        for g, sym in zip(ids, np.asarray(symbols).astype(str), strict=True):
            if sym and sym not in ("nan", "?") and sym not in lookup:
                by_symbol.setdefault(sym, []).append(g)
        lookup.update(by_symbol)
    return lookup


def repeated_symbols(names, lookup: dict[str, list[str]]) -> list[str]:
    """The names among ``names`` that stand for several genes of the data, as 'SYMBOL (n genes)'."""
    return [f"{n} ({len(lookup[n])} genes)" for n in dict.fromkeys(names) if len(lookup.get(n, ())) > 1]


def read_markers(path: str, classes: list[str], genes=None, symbols=None) -> dict[str, set[str]]:
    """A markers CSV (columns class, gene) -> {class: gene ids of the data}.

    Classes match the data's whatever their case, spaces or punctuation (``class_key``). Genes may be the data's ids
    or, where it has them, symbols: a symbol carried by several genes stands for all of them (named in the log). A
    class the data lacks is an error (a misspelt or foreign class would silently shrink the check); genes the data
    lacks are named in a warning and left out (a marker list is often longer than the selected genes); no gene
    matching at all is an error."""
    frame = pd.read_csv(path, dtype=str)
    if not {"class", "gene"} <= set(frame.columns):
        raise UserError(f"{path}: a markers file needs the columns class, gene (has {list(frame.columns)})")
    frame = frame.dropna(subset=["class", "gene"]).copy()
    keys: dict[str, list[str]] = {}
    for c in classes:
        keys.setdefault(class_key(c), []).append(c)
    frame["class"] = [c if c in classes else next(iter(keys.get(class_key(c), [])[:1]), c) for c in frame["class"]]
    unknown_classes = sorted(set(frame["class"]) - set(classes))
    if unknown_classes == sorted(set(frame["class"])):
        raise UserError(
            f"explain.markers ({path}): no class of the markers file is a class of the data ({', '.join(classes)})"
        )
    if unknown_classes:
        raise UserError(
            f"explain.markers ({path}): {len(unknown_classes)} classes are not classes of the data "
            f"({_listed(unknown_classes)}; the data's: {', '.join(classes)}); fix their names or remove "
            "their rows"
        )
    frame = frame[frame["class"].isin(classes)]
    if genes is None:
        return {c: set(g["gene"]) for c, g in frame.groupby("class")}
    lookup = gene_lookup(genes, symbols)
    known = frame["gene"].isin(set(lookup))
    if not known.any():
        raise UserError(
            f"explain.markers ({path}): none of its genes is a gene of the data (e.g. "
            f"{_listed(sorted(set(frame['gene'])))}; the data's e.g. {_listed(list(lookup)[:3])}); check the gene "
            "identifiers (symbols vs Ensembl ids)"
        )
    if not known.all():
        log.warning(
            "explain.markers (%s): %d marker genes are not genes of the data, left out: %s",
            path,
            int((~known).sum()),
            _listed(sorted(set(frame.loc[~known, "gene"]))),
        )
    frame = frame[known]
    if repeated := repeated_symbols(frame["gene"], lookup):
        log.info("explain.markers (%s): symbols carried by several genes, each counted: %s", path, _listed(repeated))
    return {c: {i for g in grp["gene"] for i in lookup[g]} for c, grp in frame.groupby("class")}


def _listed(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def marker_precision(table: pd.DataFrame, markers: dict[str, set[str]], k: int) -> pd.DataFrame:
    """Precision (and recall) of each class's known markers among its top ``k`` genes of a genes x classes table."""
    rows = []
    for cls, genes in markers.items():
        if cls not in table.columns or table[cls].isna().all():
            continue
        top = table[cls].dropna().sort_values(ascending=False, kind="stable").head(k).index
        hits = int(top.isin(list(genes)).sum())
        rows.append(
            {
                "class": cls,
                "k": k,
                "hits": hits,
                "precision": hits / k,
                "n_markers": len(genes),
                "recall": hits / len(genes),
            }
        )
    return pd.DataFrame(rows)


def write_gene_rankings(
    folder: Path,
    means: np.ndarray,
    classes: list[str],
    gene_names,
    markers: dict[str, set[str]] | None,
    top_k: int,
    precision_k: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(n_classes, n_genes) class-mean gene attributions of one method (``class_means`` of its per-sample gene
    attributions) -> ``gene_attributions.csv`` (genes x classes), ``top_genes.csv`` and, with markers,
    ``marker_precision.csv`` in ``folder``; returns (the genes x classes table, the top genes, the metrics entry:
    marker precision overall and per class)."""
    table = pd.DataFrame(
        np.asarray(means).T, index=pd.Index(np.asarray(gene_names).astype(str), name="gene"), columns=classes
    )
    ranking = top_genes(table, top_k)
    table.to_csv(folder / "gene_attributions.csv")
    ranking.to_csv(folder / "top_genes.csv", index=False)
    result: dict = {}
    if markers is not None:
        prec = marker_precision(table, markers, precision_k)
        prec.to_csv(folder / "marker_precision.csv", index=False)
        result[f"marker_precision_at_{precision_k}"] = float(prec["precision"].mean())
        result["per_class_precision"] = dict(zip(prec["class"], prec["precision"].astype(float), strict=False))
    return table, ranking, result
