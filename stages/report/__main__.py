"""python -m stages.report --config FILE: the self-contained HTML report and summary.json."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.artifacts import StageRun, read_manifest, write_json_atomic
from shared.evaluation.compare import compare_all
from shared.evaluation.explanations import read_explanations
from shared.evaluation.models_index import read_models_index
from shared.evaluation.shortcuts import table_rows as shortcut_table_rows
from shared.stage import main

from .layouts import layout_rows, marked
from .multiqc import write_custom_content
from .params import Report
from .sections import (
    biology_section,
    conformal_section,
    conformal_summary,
    data_summary,
    html_table,
    model_section,
    png_base64,
    sample_trust_section,
    subregion_table,
)


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
        html_table(
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
                    (cls, html_table(g.head(settings.top_genes_shown)[["rank", "gene", "score"]], "{:.3g}"))
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
                        pngs[fig] = png_base64(folder / "figures" / f"{fig}.png")
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
                        "precision_html": html_table(pd.read_csv(folder / "marker_precision.csv")) if k else None,
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
        overview_html=html_table(overview),
        comparison=comparison,
        comparison_html=comparison_html,
        not_paired=not_paired,
        protocol=protocol,
        provenance=provenance,
        packages=packages,
        devices=sorted({s["device"] for s in provenance}),
        total_wall_time=sum(s["wall_time_s"] for s in provenance),
        config_yaml=yaml.safe_dump(exp.to_dict(), sort_keys=False),
        trust_html=html_table(pd.DataFrame(trust_rows).dropna(axis=1, how="all")) if trust_rows else None,
        conformal_models=conformal_models,
        sample_trust=sample_trust,
        conformal_html=html_table(pd.DataFrame([c["row"] for c in conformal_models]), "{:.3g}")
        if conformal_models
        else None,
        biology=biology,
        biology_absent=biology_absent,
        shortcuts_html=html_table(pd.DataFrame(shortcut_table).fillna("")) if shortcut_table else None,
        layouts_html=html_table(pd.DataFrame(layout_table).fillna("")) if layout_table else None,
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
