"""Does an explanation survive a change of layout? The statistics of the layout-sensitivity check.

An image model of expression sees genes where a layout put them (a t-SNE's seed, an embedding); the layout is an
arbitrary choice, so a conclusion about a class's genes that changes with it is about the layout. preprocess
re-fits the layout (other seeds, another embedding), train_torch trains one member of the model on each exactly as
the main model's first fold model, and explain ranks the genes of each with one method; here each ranking is set
against the main model's, class by class:

- Spearman correlation of the class-mean gene scores over all genes, and the share of the main model's top ``k``
  genes that are also the other model's top ``k`` (``top_k_agreement``);
- planted-marker precision@k of every model, when markers are known;
- the same for the **control**: the main model's own first fold model on the main layout, trained on the same rows
  with the same seed as every layout's model. It is what a one-member retrain changes without moving a gene: a
  layout's model is read against it, not against 1.

A class's top genes are marked **not robust to layout** when the median over the layouts of their top-k overlap
with the main model is below ``threshold`` (explain.layout_sensitivity.threshold): most of the list would not be
reported again after a change of layout. The control's overlap is recorded beside it, so a class whose genes move as
much with a same-layout retrain is seen to depend on the training run, not on the layout alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .rankings import marker_precision


def top_k_agreement(a: np.ndarray, b: np.ndarray, k: int) -> tuple[float, float]:
    """Two rankings' scores of the same genes (higher first) -> (Spearman correlation of the scores over all genes,
    fraction of the top ``k`` genes they share). NaN scores (a class absent) give NaN."""
    if np.isnan(a).all() or np.isnan(b).all():
        return float("nan"), float("nan")
    a, b = np.nan_to_num(a, nan=-np.inf), np.nan_to_num(b, nan=-np.inf)
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    rho = stats.spearmanr(a, b).statistic if a.std() > 0 and b.std() > 0 else float("nan")
    return float(rho), len(np.intersect1d(top_a, top_b)) / min(k, len(a))


def compare(reference: np.ndarray, other: np.ndarray, classes: list[str], k: int) -> dict:
    """Two (n_classes, n_genes) class-mean rankings -> per class {spearman, top_k_overlap} and their means over the
    classes present in both."""
    per_class = {}
    for c, name in enumerate(classes):
        rho, overlap = top_k_agreement(reference[c], other[c], k)
        if not np.isnan(overlap):
            per_class[name] = {"spearman": rho, "top_k_overlap": overlap}
    return {
        "spearman": float(np.nanmean([v["spearman"] for v in per_class.values()])) if per_class else float("nan"),
        "top_k_overlap": float(np.mean([v["top_k_overlap"] for v in per_class.values()]))
        if per_class
        else float("nan"),
        "per_class": per_class,
    }


def precision(means: np.ndarray, classes: list[str], genes, markers: dict[str, set[str]], k: int) -> dict:
    """Planted-marker precision@k of a (n_classes, n_genes) ranking: the mean over the classes with markers and per
    class (``shared.evaluation.rankings.marker_precision``)."""
    table = pd.DataFrame(np.asarray(means).T, index=np.asarray(genes).astype(str), columns=classes)
    prec = marker_precision(table, markers, k)
    if prec.empty:
        return {}
    return {
        "marker_precision": float(prec["precision"].mean()),
        "per_class_precision": dict(zip(prec["class"], prec["precision"].astype(float), strict=True)),
    }


def verdicts(layouts: dict[str, dict], control: dict | None, classes: list[str], threshold: float) -> dict:
    """Per class: the median and smallest top-k overlap with the main model over the layouts, the median Spearman,
    the control's overlap, and ``robust`` (median overlap at least ``threshold``)."""
    out = {}
    for name in classes:
        overlaps = [v["per_class"][name]["top_k_overlap"] for v in layouts.values() if name in v["per_class"]]
        if not overlaps:
            continue
        rhos = [v["per_class"][name]["spearman"] for v in layouts.values() if name in v["per_class"]]
        median = float(np.median(overlaps))
        out[name] = {
            "median_top_k_overlap": median,
            "min_top_k_overlap": float(np.min(overlaps)),
            "median_spearman": float(np.nanmedian(rhos)) if not np.isnan(rhos).all() else float("nan"),
            "control_top_k_overlap": (control or {}).get("per_class", {}).get(name, {}).get("top_k_overlap"),
            "robust": bool(median >= threshold),
        }
    return out


def assess(
    main: np.ndarray,
    control: np.ndarray | None,
    layouts: dict[str, np.ndarray],
    classes: list[str],
    k: int,
    threshold: float,
    genes=None,
    markers: dict[str, set[str]] | None = None,
    precision_k: int | None = None,
) -> dict:
    """The check's figures: ``main`` the main model's (n_classes, n_genes) class-mean gene scores, ``control`` its
    first fold model's (or None), ``layouts`` {name: the layout's model's}. Returns {main, control, layouts,
    per_class, not_robust}: each model's comparison with the main model (``compare``) and marker precision
    (``precision``, with ``markers``), the per-class verdicts and the classes marked not robust."""

    def scored(means: np.ndarray) -> dict:
        out = compare(main, means, classes, k)
        if markers is not None:
            out.update(precision(means, classes, genes, markers, precision_k or k))
        return out

    result: dict = {"main": precision(main, classes, genes, markers, precision_k or k) if markers is not None else {}}
    result["control"] = None if control is None else scored(control)
    result["layouts"] = {name: scored(means) for name, means in layouts.items()}
    result["per_class"] = verdicts(result["layouts"], result["control"], classes, threshold)
    result["not_robust"] = [c for c, v in result["per_class"].items() if not v["robust"]]
    return result
