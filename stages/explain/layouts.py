"""The layout-sensitivity check of one model (shared.evaluation.layout_sensitivity): the models its trainer trained on
other layouts of the genes (``layouts.json``), and the model's own first fold model as the same-layout control, each
explained with one method on the samples the main model was explained on; their class gene rankings set against the
main model's, their held-out accuracy beside its. Written to ``{model}/layout_sensitivity.csv``; the entry goes to
metrics.json and the model's attributions.h5ad."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score

from shared.evaluation.layout_sensitivity import assess
from shared.evaluation.models_index import IndexedModel
from shared.logs import get_logger
from shared.models import Ensemble, load_classifier

from .attributions import attribute_chunks, members
from .inputs import ExplainedModel, ModelInputs
from .methods import make_method
from .params import Explain
from .store import ClassMeans

log = get_logger("stages.explain")
CONTROL = "first fold model"


def class_gene_means(
    model, data: ModelInputs, n_classes: int, method_name: str, settings: Explain, device, seed: int, desc: str
) -> np.ndarray:
    """(n_classes, n_genes) class means of ``method_name``'s gene attributions of ``model`` over ``data``'s samples
    (NaN for a class without one), a chunk at a time, seeded as explain_method seeds the main model's."""
    method = make_method(method_name, model, settings, data, device, seed)
    means = ClassMeans(n_classes)
    torch.manual_seed(seed)
    for start, attr in attribute_chunks(
        method, data.array, data.labels, device, settings.batch_size, settings.chunk_size, desc, scale=data.scale
    ):
        rows = np.arange(start, start + len(attr))
        means.add(data.to_genes(attr, rows), data.labels[rows])
    return means.result()


def _scores(labels: np.ndarray, proba: np.ndarray) -> dict:
    pred = proba.argmax(1)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=np.unique(labels), zero_division=0)),
    }


def layout_sensitivity(
    explained: ExplainedModel,
    held_out: ModelInputs,
    rows: np.ndarray,
    main_means: np.ndarray,
    variants: list[IndexedModel],
    exp_dir: Path,
    settings: Explain,
    folder: Path,
) -> dict:
    """The model's layout-sensitivity entry: the method, k, threshold, each model's accuracy, macro-F1, comparison
    with the main ranking and marker precision, the per-class verdicts and ``not_robust``. ``held_out``: every
    held-out row with the main model's predictions; ``rows``: those explained (explain.correct_only);
    ``main_means``: the main model's class means of the method over them."""
    t0 = time.time()
    method = settings.layout_method
    classes, device, seed = explained.classes, explained.device, explained.seed
    nc = len(classes)
    data = explained.data
    accuracy = {"main": _scores(held_out.labels, held_out.proba)}

    control = Ensemble([members(explained.model)[0]]).to(device).eval()
    main_proba = held_out.proba
    accuracy[CONTROL] = _scores(held_out.labels, held_out.predict(control, device))
    held_out.proba = main_proba  # predict() keeps its last predictions: the main model's stay in place
    control_means = class_gene_means(control, data, nc, method, settings, device, seed, f"{explained.name} {CONTROL}")

    layout_means, described = {}, {}
    for variant in variants:
        model, spec = load_classifier(variant.folder, device)
        vdata = ModelInputs(exp_dir, spec)
        accuracy[variant.entry["layout"]] = _scores(vdata.labels, vdata.predict(model, device))
        vdata = vdata.take(rows)
        layout_means[variant.entry["layout"]] = class_gene_means(
            model, vdata, nc, method, settings, device, seed, variant.name
        )
        described[variant.entry["layout"]] = {
            "model": variant.name,
            **{k: variant.entry.get(k) for k in ("seed", "embedding", "genes_moved")},
        }
    result = assess(
        main_means,
        control_means,
        layout_means,
        classes,
        settings.top_k,
        settings.layout_sensitivity.threshold,
        data.gene_names,
        explained.markers,
        settings.precision_k,
    )
    result["main"].update(accuracy["main"])
    result["control"].update(accuracy[CONTROL], model=f"{explained.name} ({CONTROL}, main layout)")
    for name, entry in result["layouts"].items():
        entry.update(described[name], **accuracy[name])
    entry = {
        "method": method,
        "top_k": settings.top_k,
        "precision_k": settings.precision_k if explained.markers is not None else None,
        "threshold": settings.layout_sensitivity.threshold,
        "n_samples": int(len(rows)),
        "n_test": int(len(held_out.labels)),
        **result,
        "seconds": round(time.time() - t0, 2),
    }
    table(explained.name, entry, classes).to_csv(folder / "layout_sensitivity.csv", index=False)
    for name, v in entry["per_class"].items():
        log.info(
            "%s %s: top %d genes of %s shared with %d other layouts: median %.2f (same-layout control %.2f)%s",
            explained.name,
            method,
            settings.top_k,
            name,
            len(layout_means),
            v["median_top_k_overlap"],
            v["control_top_k_overlap"] if v["control_top_k_overlap"] is not None else float("nan"),
            "" if v["robust"] else ": NOT ROBUST TO LAYOUT",
        )
    return entry


def table(model: str, entry: dict, classes: list[str]) -> pd.DataFrame:
    """layout_sensitivity.csv: one row per model and class (the main model, the control, each layout's model)."""
    rows = []
    models = [("main", {"model": model, **entry["main"]}), ("main (same-layout control)", entry["control"])]
    models += list(entry["layouts"].items())
    for layout, m in models:
        per_class = m.get("per_class", {})
        for cls in classes:
            rows.append(
                {
                    "model": m.get("model"),
                    "layout": layout,
                    "seed": m.get("seed"),
                    "embedding": m.get("embedding"),
                    "genes_moved": m.get("genes_moved"),
                    "accuracy": m.get("accuracy"),
                    "macro_f1": m.get("macro_f1"),
                    "class": cls,
                    "spearman": per_class.get(cls, {}).get("spearman"),
                    "top_k_overlap": per_class.get(cls, {}).get("top_k_overlap"),
                    "marker_precision": m.get("per_class_precision", {}).get(cls),
                }
            )
    return pd.DataFrame(rows)
