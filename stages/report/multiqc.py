"""The report's headline table and model comparison as MultiQC custom content, so that a MultiQC report (an nf-core
pipeline's, say) run over the outputs shows them.

The format is MultiQC's "custom content" as its documentation describes it (MultiQC repository,
docs/markdown/custom_content/index.md; published at docs.seqera.io/multiqc/custom_content): a file whose name ends
in ``_mqc.yaml`` is found by any MultiQC installation with no configuration, and holds its own section settings
(``id``, ``section_name``, ``description``, ``plot_type: table``, ``pconfig``, ``headers``) beside ``data``, one row
per "sample" (here a model, or a pair of models). Files with the same section ``id`` are merged into one section, so
the reports of many experiments (a sweep run by the Snakemake workflow) make one table with a row per experiment and
model. Rows are named ``<experiment>: <model>``.

Written under ``report/multiqc/``: ``<experiment>_models_mqc.yaml`` (the held-out scores of every model, as the
report's overview table) and, when two or more models were compared on the same folds,
``<experiment>_comparisons_mqc.yaml`` (each pair: metric, folds, means, difference, the corrected resampled t-test's
and the Wilcoxon test's p, and whether the difference is significant).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

#: the MultiQC section ids (one section for every experiment's rows)
MODELS_ID = "oncoxai_models"
COMPARISONS_ID = "oncoxai_comparisons"
#: the parent section grouping both (MultiQC's parent_id / parent_name)
PARENT = {
    "parent_id": "oncoxai",
    "parent_name": "oncoxai",
    "parent_description": "Classifiers trained and explained by oncoxai: held-out scores and paired comparisons.",
}

_SCORE = {"min": 0, "max": 1, "format": "{:,.3f}", "scale": "RdYlGn"}
MODEL_HEADERS: dict[str, dict[str, Any]] = {
    "accuracy": {"title": "Accuracy", "description": "accuracy on the held-out test split", **_SCORE},
    "macro_f1": {"title": "Macro-F1", "description": "macro-averaged F1 on the held-out test split", **_SCORE},
    "macro_auc": {"title": "Macro AUC", "description": "macro-averaged one-vs-rest ROC AUC, held-out", **_SCORE},
    "macro_precision": {"title": "Macro precision", "description": "macro-averaged precision, held-out", **_SCORE},
    "macro_recall": {"title": "Macro recall", "description": "macro-averaged recall, held-out", **_SCORE},
    "kind": {"title": "Kind", "description": "deep model or baseline"},
    "trained_by": {"title": "Trained by", "description": "the stage that trained it"},
    "at_chance": {"title": "At chance", "description": "yes: macro AUC below 0.6, the model did not learn the task"},
    "n_test": {"title": "Test samples", "description": "samples in the held-out test split", "format": "{:,.0f}"},
}
_P = {"min": 0, "max": 1, "format": "{:,.3g}", "scale": "RdYlGn-rev"}
COMPARISON_HEADERS: dict[str, dict[str, Any]] = {
    "metric": {"title": "Metric", "description": "what was compared, fold by fold"},
    "folds": {"title": "Folds", "description": "paired folds (the same splits for both models)", "format": "{:,.0f}"},
    "mean_a": {"title": "Mean A", "description": "the first model's mean over the folds", "format": "{:,.3f}"},
    "mean_b": {"title": "Mean B", "description": "the second model's mean over the folds", "format": "{:,.3f}"},
    "mean_difference": {"title": "Difference", "description": "mean A - mean B", "format": "{:+,.3f}"},
    "corrected_p": {"title": "Corrected t-test p", "description": "Nadeau-Bengio corrected resampled t-test", **_P},
    "wilcoxon_p": {"title": "Wilcoxon p", "description": "Wilcoxon signed-rank test over the folds", **_P},
    "significant": {"title": "Significant", "description": "corrected t-test p < 0.05"},
}


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """The row without missing or non-finite values (MultiQC shows an empty cell); booleans as yes / no."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool):
            out[key] = "yes" if value else "no"
        elif value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        else:
            out[key] = value
    return out


def models_content(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline table (summary.json's models) as a MultiQC custom-content table."""
    experiment = summary["experiment"]
    data = {}
    for name, entry in summary["models"].items():
        row = {k: entry.get(k) for k in ("accuracy", "macro_f1", "macro_auc", "macro_precision", "macro_recall")}
        row.update(kind=entry.get("kind"), trained_by=entry.get("provider"), at_chance=entry.get("at_chance"))
        row["n_test"] = summary.get("n_test")
        data[f"{experiment}: {name}"] = _clean(row)
    return {
        "id": MODELS_ID,
        "section_name": "Classifiers: held-out scores",
        "description": "Every classifier on its experiment's held-out test split (no fold, early stopping or setting "
        "saw it), as in the experiment's report (outputs/<experiment>/report/index.html).",
        **PARENT,
        "plot_type": "table",
        "pconfig": {"id": f"{MODELS_ID}_table", "title": "oncoxai: held-out scores", "col1_header": "Model"},
        "headers": MODEL_HEADERS,
        "data": data,
    }


def comparisons_content(experiment: str, comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """The paired comparisons (shared.evaluation.compare.compare_all's comparable pairs) as a custom-content table."""
    data = {}
    for c in comparisons:
        row = {
            "metric": c["metric"],
            "folds": c["n_folds"],
            "mean_a": c["mean_a"],
            "mean_b": c["mean_b"],
            "mean_difference": c["mean_difference"],
            "corrected_p": c["corrected_ttest"]["p"],
            "wilcoxon_p": c["wilcoxon"]["p"],
            "significant": c["significant"],
        }
        data[f"{experiment}: {c['a']} vs {c['b']}"] = _clean(row)
    return {
        "id": COMPARISONS_ID,
        "section_name": "Classifiers: paired comparisons",
        "description": "Each pair of models trained on the same folds (A vs B): the corrected resampled t-test and the "
        "Wilcoxon test over the folds. With few folds the Wilcoxon test cannot reach p < 0.05 whatever the data; "
        "each experiment's report says what the tests can and cannot show.",
        **PARENT,
        "plot_type": "table",
        "pconfig": {"id": f"{COMPARISONS_ID}_table", "title": "oncoxai: paired comparisons", "col1_header": "A vs B"},
        "headers": COMPARISON_HEADERS,
        "data": data,
    }


def write_custom_content(out: Path, summary: dict[str, Any], comparisons: list[dict[str, Any]]) -> list[Path]:
    """Write the report's MultiQC files under ``out/multiqc/``; their paths."""
    folder = out / "multiqc"
    folder.mkdir(parents=True, exist_ok=True)
    experiment = summary["experiment"]
    written = [folder / f"{experiment}_models_mqc.yaml"]
    written[0].write_text(yaml.safe_dump(models_content(summary), sort_keys=False, allow_unicode=True))
    if comparisons:
        path = folder / f"{experiment}_comparisons_mqc.yaml"
        path.write_text(yaml.safe_dump(comparisons_content(experiment, comparisons), sort_keys=False))
        written.append(path)
    return written
