"""python -m stages.report --config FILE: the self-contained HTML report and summary.json."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from shared.artifacts import StageRun, read_manifest, write_json_atomic
from shared.dataset import INFO, read_info
from shared.evaluation.compare import compare_all
from shared.evaluation.explanations import Subregions, read_explanations
from shared.evaluation.models_index import read_models_index
from shared.evaluation.shortcuts import table_rows as shortcut_table_rows
from shared.stage import main

from .layouts import layout_rows, marked
from .multiqc import write_custom_content
from .params import Report
from .plots import plot_confusion, plot_history, plot_mean_confusion, plot_roc

#: a model whose held-out macro ROC-AUC is below this learned (next to) nothing; its explanations explain noise
CHANCE_AUC = 0.6


def at_chance(test: dict) -> bool:
    return bool(test["macro_auc"] < CHANCE_AUC)


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _html_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> Markup:
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
        history_png = _png(figures / f"{name}_history.png")
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
        "per_class_html": _html_table(pd.read_csv(folder / "per_class.csv")),
        "folds_html": _html_table(pd.DataFrame(metrics["folds"])[cols].dropna(axis=1, how="all")),
        "confusion_png": _png(figures / f"{name}_confusion.png"),
        "history_png": history_png,
        "roc_png": _png(figures / f"{name}_roc.png"),
        "cv_confusion_png": _png(figures / f"{name}_cv_confusion.png"),
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
        "per_class_html": _html_table(per_class),
        "flagged_html": _html_table(
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
        "reasons_html": _html_table(
            pd.DataFrame([{"reason": r, "samples": c} for r, c in figures.get("reasons", {}).items()])
        ),
        "flagged_html": _html_table(shown, "{:.3g}") if len(shown) else None,
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
    return _html_table(pd.DataFrame(rows))


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
            pngs[fig] = _png(path)
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
            _html_table(
                table[["method", "class", "gene_set", "set_size", "overlap", "expected", "p", "p_adj"]], "{:.3g}"
            )
            if len(table)
            else None
        )
    return {
        "model": model,
        "n_train": entry["n_train"],
        "retrain_model": entry["retrain_model"],
        "table_html": _html_table(pd.DataFrame(rows).dropna(axis=1, how="all"), "{:.3g}"),
        "pngs": pngs,
        "enrichment_html": enrichment,
        "has_gene_sets": (folder / "enrichment.csv").is_file(),
    }, summary


def run(stage: StageRun) -> None:
    exp = stage.exp
    settings: Report = exp.section("report")
    out = stage.out
    figures = out / "figures"
    figures.mkdir()
    classifiers = stage.providers("classifiers", required=True)
    data = data_summary(stage, classifiers)
    n_test = data["n_test"]

    models, summary_models, scored, conformal_models = [], {}, [], []
    for indexed in read_models_index(classifiers):
        name = indexed.name
        section, metrics = model_section(name, {**indexed.entry, "provider": indexed.trainer}, indexed.folder, figures)
        models.append(section)
        scored.append({"name": name, "folds": metrics["folds"], "splits": metrics.get("splits")})
        summary_models[name] = {
            k: metrics["test"][k] for k in ("accuracy", "macro_f1", "macro_auc", "macro_precision", "macro_recall")
        }
        summary_models[name].update(
            kind=indexed.entry["kind"], provider=indexed.trainer, at_chance=section["at_chance"]
        )
        conformal = conformal_section(name, metrics, indexed.folder)
        if conformal is not None:
            conformal_models.append(conformal)
            summary_models[name]["conformal"] = conformal_summary(metrics["conformal"])
    overview = pd.DataFrame(
        [
            {
                "model": m["name"],
                "kind": m["kind"],
                "trained by": m["provider"],
                **{k: m["test"][k] for k in ("accuracy", "macro_f1", "macro_auc")},
                "cv_macro_f1": m["cv"]["macro_f1"],
            }
            for m in models
        ]
    )
    all_pairs = compare_all(scored)
    comparison = [c for c in all_pairs if c["comparable"]]
    not_paired = [c["statement"] for c in all_pairs if not c["comparable"]]
    comparison_html = (
        _html_table(
            pd.DataFrame(
                [
                    {
                        "a": c["a"],
                        "b": c["b"],
                        "mean a": c["mean_a"],
                        "mean b": c["mean_b"],
                        "folds": c["n_folds"],
                        "corrected t-test p": c["corrected_ttest"]["p"],
                        "Wilcoxon p": c["wilcoxon"]["p"],
                        "Wilcoxon smallest attainable p": c["wilcoxon"]["min_attainable_p"],
                    }
                    for c in comparison
                ]
            ),
            "{:.3g}",
        )
        if comparison
        else None
    )

    explanations, summary_expl, trust_rows = [], {}, []
    shortcut_table, summary_shortcuts = [], {}
    sample_trust, summary_sample_trust = [], {}
    layout_table, layouts_marked, summary_layouts = [], [], {}
    biology, summary_bio, biology_absent = [], {}, {}
    for provider in stage.providers("explanations").values():
        provided = read_explanations(provider)
        bio_entries = {name: e.biology for name, e in provided.models.items() if e.biology}
        if provided.baselines_biology:
            bio_entries["baselines"] = provided.baselines_biology
        for name, bio_entry in bio_entries.items():
            section, summary_bio[name] = biology_section(name, bio_entry, provider / name / "biology", figures)
            biology.append(section)
        biology_absent.update({name: e.biology_absent for name, e in provided.models.items() if e.biology_absent})
        for name, model_entry in provided.models.items():
            if model_entry.shortcuts is not None:
                shortcut_table += shortcut_table_rows(name, model_entry.shortcuts)
                summary_shortcuts[name] = model_entry.shortcuts_headline()
            if model_entry.sample_trust is not None:
                sample_trust.append(
                    sample_trust_section(
                        name,
                        model_entry.sample_trust,
                        provider / name,
                        f"{provider.name}/{name}/{model_entry.sample_trust.get('table', 'sample_trust.csv')}",
                    )
                )
                summary_sample_trust[name] = model_entry.sample_trust_headline()
            if model_entry.layout_sensitivity is not None:
                layout_table += layout_rows(name, model_entry.layout_sensitivity, data["classes"])
                layouts_marked += marked(name, model_entry.layout_sensitivity)
                summary_layouts[name] = model_entry.layout_sensitivity.headline()
            for method, entry in model_entry.methods.items():
                folder = provider / name / method
                ranking = (
                    pd.read_csv(folder / "top_genes.csv", dtype={"gene": str})
                    if (folder / "top_genes.csv").is_file()
                    else pd.DataFrame(columns=["class", "rank", "gene", "score"])
                )
                top_tables = [
                    (cls, _html_table(g.head(settings.top_genes_shown)[["rank", "gene", "score"]], "{:.3g}"))
                    for cls, g in ranking.groupby("class", sort=False)
                ]
                k = entry.precision_k
                faith, sanity, stab = entry.faithfulness, entry.sanity, entry.stability
                # the first target scored (explain's maps are of the true class; a plugged-in provider may differ)
                loc = next(iter((entry.localisation or {}).values()), None)
                folds_stab = (stab.folds if stab else None) or {}
                trust_rows.append(
                    {
                        "model": name,
                        "method": method,
                        f"marker precision@{k}" if k else "marker precision": entry.precision,
                        "deletion AUC": faith and faith.deletion_auc,
                        "random deletion AUC": faith and faith.random_deletion_auc,
                        "insertion AUC": faith and faith.insertion_auc,
                        "random insertion AUC": faith and faith.random_insertion_auc,
                        "faithful (vs random)": faith and faith.verdict(),
                        "rank corr. with randomised model": sanity and sanity.spearman_all_at_once,
                        "model-sensitive": sanity and sanity.verdict(),
                        "fold models: Spearman": folds_stab.get("spearman"),
                        "fold models: top-k shared": folds_stab.get("shared_top_k"),
                        "random draws: top-k shared": ((stab.draws if stab else None) or {}).get("shared_top_k"),
                        "map share in tumour mask": loc and loc.cam_in_mask_mean,
                        "mask's share of the brain (chance)": loc and loc.chance_mean,
                        "patients above chance": loc and f"{loc.above_chance} of {loc.n}",
                    }
                )
                pngs = {}
                for fig in ("class_maps", "faithfulness", "top_genes_heatmap", "samples", "overlays"):
                    if (folder / "figures" / f"{fig}.png").is_file():
                        shutil.copy2(folder / "figures" / f"{fig}.png", figures / f"{name}_{method}_{fig}.png")
                        pngs[fig] = _png(folder / "figures" / f"{fig}.png")
                explanations.append(
                    {
                        "model": name,
                        "method": method,
                        "at_chance": summary_models.get(name, {}).get("at_chance", False),
                        "description": entry.description
                        + (
                            ""
                            if model_entry.gene_map is not False
                            else " These inputs have no pixel-to-gene map (a transductive sample image): the maps "
                            "show where in the input the model looked, not which genes."
                        ),
                        "samples": model_entry.samples,
                        "precision": entry.precision,
                        "k": k,
                        "precision_html": _html_table(pd.read_csv(folder / "marker_precision.csv")) if k else None,
                        "pngs": pngs,
                        "top_tables": top_tables,
                        "faithfulness": faith and faith.to_json(),
                        "sanity": sanity and sanity.to_json(),
                        "stability": stab and stab.to_json(),
                        "layer": entry.layer,
                        "localisation": entry.to_json().get("localisation"),
                        "subregions": entry.subregions and entry.subregions.target,
                        "subregions_html": subregion_table(entry.subregions)
                        if entry.subregions and entry.subregions.per_class
                        else None,
                        "subregions_csv": f"{provider.name}/{name}/{method}/subregions.csv"
                        if (folder / "subregions.csv").is_file()
                        else None,
                    }
                )
                summary_expl[f"{name}/{method}"] = entry.headline() | {"samples": model_entry.samples}

    provenance = []
    for upstream in exp.upstream("report"):
        manifest = read_manifest(stage.upstream(upstream))
        provenance.append(
            {
                "stage": upstream,
                "wall_time_s": manifest["wall_time_s"],
                "device": manifest["device"],
                "fingerprint": manifest["fingerprint"],
                "started": manifest.get("started", ""),
            }
        )
    first = read_manifest(next(iter(classifiers.values())))
    packages = first["packages"]
    protocol = models[0]["protocol"] if models else ""

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
    html = env.get_template("index.html").render(
        title=settings.title,
        experiment=exp.name,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        commit=first["git_commit"],
        data=data,
        models=models,
        explanations=explanations,
        overview_html=_html_table(overview),
        comparison=comparison,
        comparison_html=comparison_html,
        not_paired=not_paired,
        protocol=protocol,
        provenance=provenance,
        packages=packages,
        devices=sorted({s["device"] for s in provenance}),
        total_wall_time=sum(s["wall_time_s"] for s in provenance),
        config_yaml=yaml.safe_dump(exp.to_dict(), sort_keys=False),
        trust_html=_html_table(pd.DataFrame(trust_rows).dropna(axis=1, how="all")) if trust_rows else None,
        conformal_models=conformal_models,
        sample_trust=sample_trust,
        conformal_html=_html_table(pd.DataFrame([c["row"] for c in conformal_models]), "{:.3g}")
        if conformal_models
        else None,
        biology=biology,
        biology_absent=biology_absent,
        shortcuts_html=_html_table(pd.DataFrame(shortcut_table).fillna("")) if shortcut_table else None,
        layouts_html=_html_table(pd.DataFrame(layout_table).fillna("")) if layout_table else None,
        layouts_marked=layouts_marked,
    )
    (out / "index.html").write_text(html)
    write_json_atomic(
        out / "summary.json",
        {
            "experiment": exp.name,
            "title": settings.title,
            "evaluated_on": "held-out test split",
            "n_test": n_test,
            "small_classes": data.get("small_classes"),
            "models": summary_models,
            "comparisons": [
                {k: c[k] for k in ("a", "b", "metric", "n_folds", "mean_difference", "significant", "statement")}
                for c in comparison
            ],
            "not_paired": not_paired,
            "explanations": summary_expl,
            "biology": summary_bio,
            "biology_absent": biology_absent,
            "shortcuts": summary_shortcuts,
            "sample_trust": summary_sample_trust,
            # only when explain ran the check (preprocess.layout_sensitivity): otherwise summary.json is as before
            **({"layout_sensitivity": summary_layouts} if summary_layouts else {}),
        },
    )
    write_custom_content(out, json.loads((out / "summary.json").read_text()), comparison)  # MultiQC's custom content


if __name__ == "__main__":
    raise SystemExit(main("report", run))
