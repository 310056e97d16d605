"""The report's parts, each built from one stage's files: the data, each model (its scores, figures, conformal
sets and samples to distrust), the MRI sub-regions and the biology checks (``python -m stages.report`` puts them on
the page)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from shared.artifacts import StageRun
from shared.dataset import INFO, read_info
from shared.evaluation.explanations import Subregions
from shared.evaluation.models_index import read_models_index

from .plots import plot_confusion, plot_history, plot_mean_confusion, plot_roc

#: a model whose held-out macro ROC-AUC is below this learned (next to) nothing; its explanations explain noise
CHANCE_AUC = 0.6


def at_chance(test: dict) -> bool:
    return bool(test["macro_auc"] < CHANCE_AUC)


def png_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def html_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> Markup:
    """A sortable table (the page's inline script) in a horizontally scrolling box; every cell HTML-escaped."""
    table = frame.to_html(index=False, float_format=floatfmt.format, border=0, classes="sortable", escape=True)
    return Markup(f'<div class="scroll">{table}</div>')


def data_summary(stage: StageRun, classifiers: dict[str, Path]) -> dict:
    """Classes and sizes from the dataset layout's summary (shared.dataset): the dataset provider's, else a
    classifier provider's own (a trainer that reads its data itself, as the MRI stage does, writes one); else only
    the classes and the test size from the first model's metrics."""
    datasets = stage.providers("dataset")
    source = next(iter(datasets.values()), None) or next(
        (folder for folder in classifiers.values() if (folder / INFO).is_file()), None
    )
    if source is not None:
        dataset = read_info(source)
        counts = dataset.get("counts", {})
        rows = [
            {"class": c, "train": counts.get(c, {}).get("train", 0), "test": counts.get(c, {}).get("test", 0)}
            for c in dataset["classes"]
        ]
        n_test = sum(r["test"] for r in rows)
        return {
            "n_genes": None,
            "transform": None,
            "image_shape": None,
            "cohort": None,
            **dataset,
            "counts": rows,
            "n_test": n_test,
            "n_samples": n_test + sum(r["train"] for r in rows),
            "small_classes": small_classes_summary(dataset),
        }
    first = next(iter(read_models_index(classifiers)), None)
    if first is None:
        return {"classes": [], "counts": [], "n_test": 0, "n_samples": None}
    metrics = json.loads((first.folder / "metrics.json").read_text())
    return {
        "classes": metrics.get("classes", []),
        "counts": [],
        "n_test": metrics["test"]["n"],
        "n_samples": None,
        "n_genes": None,
        "transform": None,
        "image_shape": None,
        "cohort": None,
    }


def small_classes_summary(dataset: dict) -> dict | None:
    """The provider's policy for classes too small for the protocol and the classes it left out with their sample
    counts (``{"policy", "min_samples", "key", "left_out": {class: samples}}``); None when it declares none."""
    small = dataset.get("small_classes")
    if not small:
        return None
    return {k: small[k] for k in ("key", "policy", "min_samples")} | {"left_out": dict(small.get("left_out", {}))}


def model_section(name: str, entry: dict, folder: Path, figures: Path) -> tuple[dict, dict]:
    """The report's view of one model in the classifier result layout: (template entry, metrics.json)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    plot_confusion(
        pd.read_csv(folder / "confusion_matrix.csv", index_col=0),
        figures / f"{name}_confusion.png",
        f"{name}: held-out test",
    )
    plot_roc(pd.read_csv(folder / "roc.csv"), figures / f"{name}_roc.png", f"{name}: one-vs-rest ROC, held-out test")
    plot_mean_confusion(
        pd.read_csv(folder / "confusion_matrix_cv_mean.csv", index_col=0),
        figures / f"{name}_cv_confusion.png",
        f"{name}: validation folds, mean (row fractions)",
    )
    history_png = None
    if (folder / "history.csv").is_file():
        plot_history(pd.read_csv(folder / "history.csv"), figures / f"{name}_history.png", f"{name}: per-fold training")
        history_png = png_base64(figures / f"{name}_history.png")
    cols = [
        c
        for c in (
            "repeat",
            "fold",
            "best_epoch",
            "epochs_run",
            "val_accuracy",
            "val_macro_f1",
            "test_accuracy",
            "test_macro_f1",
        )
        if c in pd.DataFrame(metrics["folds"]).columns
    ]
    return {
        "name": name,
        "kind": entry["kind"],
        "provider": entry["provider"],
        "protocol": metrics["protocol"],
        "n_parameters": metrics["n_parameters"],
        "pretrained": metrics.get("pretrained", False),
        "test": metrics["test"],
        "cv": metrics["cv"],
        "at_chance": at_chance(metrics["test"]),
        "per_class_html": html_table(pd.read_csv(folder / "per_class.csv")),
        "folds_html": html_table(pd.DataFrame(metrics["folds"])[cols].dropna(axis=1, how="all")),
        "confusion_png": png_base64(figures / f"{name}_confusion.png"),
        "history_png": history_png,
        "roc_png": png_base64(figures / f"{name}_roc.png"),
        "cv_confusion_png": png_base64(figures / f"{name}_cv_confusion.png"),
    }, metrics


def conformal_summary(figures: dict) -> dict:
    """summary.json's view of a model's conformal prediction sets (metrics.json's ``conformal``)."""
    keys = ("target_coverage", "coverage", "mean_set_size", "n", "n_single", "n_empty", "n_ambiguous")
    return {k: figures[k] for k in keys} | {
        "calibration": figures["calibration"],
        "coverage_p": figures["coverage_p"],
        "off_target": figures["off_target"],
        "per_class": {
            c: {k: v[k] for k in ("n", "coverage", "mean_set_size")} for c, v in figures["per_class"].items()
        },
    }


def conformal_section(name: str, metrics: dict, folder: Path) -> dict | None:
    """The report's view of one model's conformal sets: its row of the coverage table, its per-class table, and
    the held-out samples whose set is not a single class (empty or ambiguous); None for a model whose trainer
    wrote none (a result from before the sets were written)."""
    figures = metrics.get("conformal")
    table_path = folder / "test_conformal.csv"
    if not figures or not table_path.is_file():
        return None
    table = pd.read_csv(table_path, dtype={"sample": str, "label": str, "predicted": str, "set": str})
    table["set"] = table["set"].fillna("")
    flagged = table[table["set_size"] != 1].copy()
    flagged["set"] = flagged["set"].map(lambda s: s.replace("|", ", ") if s else "(empty)")
    flagged["why"] = np.where(flagged["set_size"] == 0, "no class reaches the threshold", "ambiguous")
    per_class = pd.DataFrame(
        [{"class": c, **{k: v[k] for k in ("n", "coverage", "mean_set_size")}} for c, v in figures["per_class"].items()]
    )
    return {
        "model": name,
        "figures": figures,
        "row": {
            "model": name,
            "target coverage": figures["target_coverage"],
            "coverage": figures["coverage"],
            "mean set size": figures["mean_set_size"],
            "single class": figures["n_single"],
            "empty": figures["n_empty"],
            "ambiguous": figures["n_ambiguous"],
            "test samples": figures["n"],
            "p (exchangeable)": figures["coverage_p"],
            "off target": "yes" if figures["off_target"] else "no",
            "calibration": f"{figures['calibration']}, {figures['n_calibration']} out-of-fold samples",
        },
        "per_class_html": html_table(per_class),
        "flagged_html": html_table(
            flagged[["sample", "label", "predicted", "set", "set_size", "covered", "why"]].rename(
                columns={"set_size": "set size", "covered": "label in set"}
            )
        )
        if len(flagged)
        else None,
        "n_flagged": int(len(flagged)),
    }


#: samples listed per model in the report's table of samples to distrust (the rest are in sample_trust.csv)
DISTRUST_SHOWN = 50


def sample_trust_section(name: str, figures: dict, folder: Path, relative: str) -> dict:
    """The report's view of one model's per-sample trust (explain's sample_trust.csv in ``folder``): the count of
    samples per reason, and the first ``DISTRUST_SHOWN`` samples with a reason to distrust them (the count of the
    rest and the CSV's path, ``relative`` to the outputs, beside them)."""
    path = folder / figures.get("table", "sample_trust.csv")
    table = (
        pd.read_csv(path, dtype={"sample": str, "conformal_set": str, "distrust": str}, keep_default_na=False)
        if path.is_file()
        else pd.DataFrame(columns=["distrust"])
    )
    flagged = table[table["distrust"] != ""]
    shown = flagged.head(DISTRUST_SHOWN)
    columns = {
        "sample": "sample",
        "label": "label",
        "prediction": "prediction",
        "p_prediction": "p(prediction)",
        "conformal_set": "conformal set",
        "fold_top_k_shared": "fold top-k shared",
        "deletion_auc": "deletion AUC",
        "random_deletion_auc": "random deletion AUC",
        "neighbour_labels": "neighbours' labels",
        "nearest_distance": "nearest distance",
        "distrust": "why not to trust it",
    }
    shown = shown[[c for c in columns if c in shown]].rename(columns=columns)
    if "conformal set" in shown:
        shown["conformal set"] = shown["conformal set"].map(lambda v: v.replace("|", ", ") if v else "(empty)")
    thresholds = figures.get("thresholds", {})
    return {
        "model": name,
        "n": figures.get("n"),
        "n_distrusted": figures.get("n_distrusted", len(flagged)),
        "method": figures.get("method"),
        "top_k": figures.get("top_k"),
        "thresholds": thresholds,
        "not_computed": figures.get("not_computed", {}),
        "n_fold_agreement": figures.get("n_fold_agreement"),
        "n_faithfulness": figures.get("n_faithfulness"),
        "reasons_html": html_table(
            pd.DataFrame([{"reason": r, "samples": c} for r, c in figures.get("reasons", {}).items()])
        ),
        "flagged_html": html_table(shown, "{:.3g}") if len(shown) else None,
        "n_rest": max(0, len(flagged) - len(shown)),
        "csv": relative,
    }


def subregion_table(sub: Subregions) -> Markup:
    """A volume method's energy share per class and tumour sub-region beside the region's share of the brain (what
    a map spread evenly would put there), the exams above it and the two-sided sign test."""
    regions = sub.regions or {}
    rows = [
        {
            "class": cls,
            "region": f"{region} ({regions[region]['description']})" if region in regions else region,
            "map's energy share": f"{r['energy_share_mean']:.3f}",
            "region's volume share (chance)": f"{r['volume_share_mean']:.3f}",
            "mean ratio": f"{r['ratio_mean']:.2f}",
            "exams above chance": f"{r['above_chance']} of {r['n']}",
            "sign test p (two-sided)": f"{r['p_sign_test']:.2g}",
        }
        for cls, per_region in sub.per_class.items()
        for region, r in per_region.items()
    ]
    return html_table(pd.DataFrame(rows))


FLAG_TEXT = {
    "de_no_better_than_chance": "top genes no closer to DE than random genes",
    "keep_no_better_than_random": "kept genes predict no better than random genes",
    "removal_costs_nothing": "removing its genes costs nothing",
}


def biology_section(model: str, entry: dict, folder: Path, figures: Path) -> tuple[dict, dict]:
    """The report's view of one model's biology checks (explain's ``biology`` entry and ``{model}/biology/``):
    (template entry, summary.json entry)."""
    rows, summary = [], {}
    for method, r in entry["methods"].items():
        k_de = next(iter(r["de_overlap"]["wilcoxon"]))
        de = r["de_overlap"]["wilcoxon"][k_de]
        first = r["retraining"][0] if r.get("retraining") else {}
        top_sets = {
            cls: f"{sets[0]['gene_set']} (adj. p {sets[0]['p_adj']:.2g})"
            for cls, sets in r.get("enrichment", {}).items()
            if sets
        }
        flags = [FLAG_TEXT[f] for f in FLAG_TEXT if r.get(f)]
        rows.append(
            {
                "method": method,
                f"DE overlap@{k_de.split('_')[1]} (mean)": de["mean_overlap"],
                "Jaccard": de["mean_jaccard"],
                "Spearman vs DE": de["mean_spearman"],
                "classes above chance": f"{de['classes_better_than_chance']} of {de['n_classes']}",
                f"keep@{first.get('k')} macro-F1": first.get("keep_f1"),
                f"genes kept@{first.get('k')}": first.get("n_genes_kept"),
                "as many random genes (mean macro-F1)": first.get("random_keep_f1"),
                f"remove@{first.get('k')} drop": first.get("remove_drop"),
                "flags": "; ".join(flags) or "none",
                "top gene set per class": "; ".join(f"{c}: {t}" for c, t in top_sets.items()) or None,
            }
        )
        summary[method] = {k: v for k, v in r.items()}
    pngs = {}
    for fig in ("de_overlap", "keep_remove"):
        path = folder / "figures" / f"{fig}.png"
        if path.is_file():
            shutil.copy2(path, figures / f"{model}_biology_{fig}.png")
            pngs[fig] = png_base64(path)
    enrichment = None
    if (folder / "enrichment.csv").is_file():
        table = pd.read_csv(folder / "enrichment.csv")
        table = (
            table[table["p_adj"] < 0.05]
            .sort_values(["method", "class", "p_adj"])
            .groupby(["method", "class"], sort=False)
            .head(3)
        )
        enrichment = (
            html_table(
                table[["method", "class", "gene_set", "set_size", "overlap", "expected", "p", "p_adj"]], "{:.3g}"
            )
            if len(table)
            else None
        )
    return {
        "model": model,
        "n_train": entry["n_train"],
        "retrain_model": entry["retrain_model"],
        "table_html": html_table(pd.DataFrame(rows).dropna(axis=1, how="all"), "{:.3g}"),
        "pngs": pngs,
        "enrichment_html": enrichment,
        "has_gene_sets": (folder / "enrichment.csv").is_file(),
    }, summary
