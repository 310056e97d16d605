"""Do the explanations agree with biology? Three checks of every gene ranking (Bontonou et al.; Hooker et al. 2019):

1. differential expression: scanpy's ``rank_genes_groups`` one-vs-rest (Wilcoxon and t-test) on the training split
   only, on the gene values the models saw; each class's top-k attributed genes against its top-k DE genes (overlap,
   Jaccard, a permutation p-value against random gene sets of the same size) and a Spearman correlation over all
   genes;
2. keep and remove, then retrain: a cheap classifier trained on the training split with only the union of the
   classes' top-k genes (keep) or without them (remove), scored on the held-out test split, beside random genes
   (seeded draws) and the DE top-k genes;
3. over-representation of each class's top-k genes in gene sets the user supplies (a GMT file), one-sided
   hypergeometric test with Benjamini-Hochberg over the sets, the background being the genes the model saw.

The training values are read once per experiment (``TrainingData``) and the DE result is cached by gene list, so
several models on the same genes share it. This module runs the checks of a model (``assess_model``) and summarises
them; each check is a module of its own: ``differential`` (1), ``retraining`` (2), ``gene_sets`` (3), beside
``importances`` (the baselines' own importances, ranked like a method's) and ``figures``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared.logs import get_logger

from .differential import DE_METHODS, TrainingData, de_agreement, de_matrix, differential_expression, order
from .figures import plot_de_overlap, plot_keep_remove
from .gene_sets import enrichment_summary, match_gene_sets, over_representation, read_gmt
from .retraining import Retrainer, keep_remove, usable_ks, verdict

log = get_logger("stages.explain")


class Context:
    """What the biology checks share across the models of one experiment: training data and DE per gene list, the
    retraining cache, the gene sets."""

    def __init__(self, exp_dir: Path, settings, seed: int):
        self.exp_dir, self.settings, self.seed = exp_dir, settings, seed
        self.by_genes: dict[tuple, tuple[TrainingData, dict, Retrainer]] = {}
        self.gene_sets = read_gmt(settings.gene_sets) if settings.gene_sets else None

    def prepared(self, spec: dict, genes, symbols, classes: list[str]):
        """(training data, DE, retrainer) of a model's genes, computed once per gene list and value source."""
        inp = spec["input"]
        key = (
            tuple(np.asarray(genes).astype(str)),
            inp.get("samples"),
            inp["array"] if inp["kind"] == "vector" else inp.get("gene_values"),
        )
        if key not in self.by_genes:
            data = TrainingData.load(self.exp_dir, spec, genes, symbols, classes)
            if data is None:
                self.by_genes[key] = None
            else:
                t0 = time.time()
                de = differential_expression(data)
                log.info(
                    "differential expression (%s) on %d training samples x %d genes: %.1f s",
                    " and ".join(DE_METHODS),
                    len(data.y_train),
                    len(data.genes),
                    time.time() - t0,
                )
                sets = (
                    match_gene_sets(
                        self.gene_sets, data.genes, data.symbols, self.settings.gene_sets, self.settings.min_set_size
                    )[0]
                    if self.gene_sets is not None
                    else None
                )
                self.by_genes[key] = (data, de, Retrainer(data, self.settings.retrain_model, self.seed), sets)
        return self.by_genes[key]


def assess_ranking(
    class_scores: np.ndarray,
    signed: bool,
    prepared,
    settings,
    seed: int,
    classes: list[str],
    de_scores: np.ndarray | None = None,
) -> dict:
    """The checks of one ranking (n_classes x n_genes class scores) under ``settings``: tables. The keep/remove
    retraining runs when ``de_scores`` (de_matrix, its DE reference) is given."""
    data, de, retrainer, sets = prepared
    overlap = de_agreement(class_scores, signed, de, classes, settings.de_k, settings.permutations, seed)
    out = {"de_overlap": overlap}
    if de_scores is not None:
        out["retraining"] = keep_remove(
            class_scores, de_scores, settings.retrain_k, retrainer, settings.random_draws, seed
        )
    if sets is not None:
        tables = []
        for c, cls in enumerate(classes):
            if np.isnan(class_scores[c]).all():
                continue
            table = over_representation(order(class_scores[c])[: settings.enrichment_k], sets, len(data.genes))
            tables.append(table.assign(**{"class": cls}))
        out["enrichment"] = pd.concat(tables, ignore_index=True)
    return out


def json_safe(value):
    """NaN and infinities -> None, recursively (JSON has no NaN: a strict parser, a browser's included, rejects it;
    e.g. the F1 after removing every gene)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def summarise(result: dict, settings) -> dict:
    """The JSON view of one ranking's checks (summary.json and metrics.json); NaN written as null."""
    return json_safe(_summarise(result, settings))


def _summarise(result: dict, settings) -> dict:
    ov = result["de_overlap"]
    out: dict = {"de_overlap": {}}
    for (method, k), g in ov.groupby(["de_method", "k"], sort=False):
        out["de_overlap"].setdefault(method, {})[f"top_{k}"] = {
            "mean_overlap": float(g["overlap"].mean()),
            "mean_jaccard": float(g["jaccard"].mean()),
            "mean_spearman": float(g["spearman"].mean()),
            "classes_better_than_chance": int(g["better_than_chance"].sum()),
            "n_classes": int(len(g)),
            "per_class": {r["class"]: {"overlap": int(r["overlap"]), "p": float(r["p"])} for _, r in g.iterrows()},
        }
    first = ov[(ov["de_method"] == "wilcoxon") & (ov["k"] == settings.de_k[0])]
    out["de_no_better_than_chance"] = bool(len(first) and not first["better_than_chance"].any())
    if "retraining" in result:
        rt = result["retraining"]
        out["retraining"] = rt.to_dict(orient="records")
        out.update(verdict(rt, settings.min_drop))
    if "enrichment" in result:
        out["enrichment"] = enrichment_summary(result["enrichment"])
    return out


def assess_model(
    name: str,
    ctx: Context,
    spec: dict,
    genes,
    symbols,
    classes: list[str],
    rankings: dict[str, tuple[np.ndarray, bool]],
    folder: Path,
) -> dict | None:
    """Every ranking of one model (method -> (class scores, signed)) checked three ways; writes
    ``folder/{de_overlap,retraining,enrichment}.csv`` and two figures; returns the JSON entry (None: no gene values
    to compare with), with the tables under ``"tables"`` and the DE result under ``"de"`` for the .h5ad."""
    t0 = time.time()
    settings = ctx.settings.model_copy(
        update={
            "de_k": usable_ks(ctx.settings, "de_k", len(genes), name),
            "retrain_k": usable_ks(ctx.settings, "retrain_k", len(genes), name),
            "enrichment_k": usable_ks(ctx.settings, "enrichment_k", len(genes), name)[0],
        }
    )
    prepared = ctx.prepared(spec, genes, symbols, classes)
    if prepared is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    de_top = de_matrix(prepared[1], classes, len(genes))
    results = {
        m: assess_ranking(scores, signed, prepared, settings, ctx.seed, classes, de_top)
        for m, (scores, signed) in rankings.items()
    }
    # the DE ranking's own enrichment, the reference of the methods'
    results_de = assess_ranking(de_top, True, prepared, settings, ctx.seed, classes) if prepared[3] is not None else {}
    tables = {}
    for key in ("de_overlap", "retraining", "enrichment"):
        parts = [r[key].assign(method=m) for m, r in results.items() if key in r]
        if key == "enrichment" and "enrichment" in results_de:
            parts.append(results_de["enrichment"].assign(method="de_wilcoxon"))
        if parts:
            table = pd.concat(parts, ignore_index=True)
            table = table[["method"] + [c for c in table.columns if c != "method"]]
            table.to_csv(folder / f"{key}.csv", index=False)
            tables[key] = table
    plot_de_overlap(
        {m: r["de_overlap"] for m, r in results.items()},
        settings.de_k[0],
        folder / "figures" / "de_overlap.png",
        f"{name}: each class's top {settings.de_k[0]} attributed genes vs its top {settings.de_k[0]} DE genes "
        "(training split)",
    )
    plot_keep_remove(
        {m: r["retraining"] for m, r in results.items()},
        folder / "figures" / "keep_remove.png",
        f"{name}: {settings.retrain_model} retrained on the training split with or without each method's "
        "top genes, scored on the held-out test split",
    )
    entry = {
        "n_train": int(len(prepared[0].y_train)),
        "de_methods": list(DE_METHODS),
        "retrain_model": settings.retrain_model,
        "methods": {m: summarise(r, settings) for m, r in results.items()},
    }
    if "enrichment" in results_de:
        entry["de_enrichment"] = json_safe(enrichment_summary(results_de["enrichment"]))
    for m, s in entry["methods"].items():
        flags = [
            f for f in ("de_no_better_than_chance", "keep_no_better_than_random", "removal_costs_nothing") if s.get(f)
        ]
        log.info(
            "%s %s: DE overlap@%d %.1f of %d (Wilcoxon)%s",
            name,
            m,
            settings.de_k[0],
            s["de_overlap"]["wilcoxon"][f"top_{settings.de_k[0]}"]["mean_overlap"],
            settings.de_k[0],
            f"; FLAGGED: {', '.join(flags)}" if flags else "",
        )
    entry["seconds"] = round(time.time() - t0, 2)
    entry["tables"], entry["de"] = tables, prepared[1]
    return entry
