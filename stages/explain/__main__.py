"""python -m stages.explain --config FILE: attributions, class maps, gene rankings, marker precision, the trust
checks and the per-sample trust table; for volumes with masks, the tumour-mask localisation and the maps in each
patient's space."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shared.artifacts import StageRun
from shared.attribution_figures import (
    ShownSamples,
    plot_class_maps,
    plot_samples,
    plot_top_genes_heatmap,
    plot_volume_overlays,
)
from shared.dataset import Dataset
from shared.devices import choose_device, describe_device
from shared.errors import UserError
from shared.evaluation.explanations import Explanations, ModelExplanations, write_explanations
from shared.evaluation.models_index import IndexedModel, read_layouts_index, read_models_index
from shared.evaluation.rankings import read_markers, write_gene_rankings
from shared.frameworks import keep_out
from shared.logs import get_logger
from shared.models import load_classifier
from shared.stage import main

from . import biology
from .attributions import attribute_chunks
from .biology import importances
from .inputs import ExplainedModel, ModelInputs, subset, symbols_of
from .layouts import layout_sensitivity
from .methods import METHODS, make_method
from .params import Explain
from .quality import trust
from .sample_trust import obs_columns, sample_trust
from .shortcuts import audit_model
from .store import AnnDataFile, ClassMeans, CsvRows, KeptRows, NpyRows, finish_anndata, open_anndata
from .volumes import VolumeChecks

log = get_logger("stages.explain")
#: the inputs explain reads (preprocess's images and vectors, train_3d_mri's volumes)
INPUT_KINDS = ("image", "vector", "volume")
#: the model files explain can load (shared.models.load_classifier); other frameworks explain their own models
FRAMEWORK = "torch"


PER_SAMPLE_COLUMNS = ["sample", "class", "prediction", "gene", "score", "rank"]


def per_sample_top(
    sample_genes: np.ndarray, data: ModelInputs, classes: list[str], gene_names, signed: bool, k: int, threshold: float
) -> pd.DataFrame:
    """sample, class, prediction, gene, score, rank: each sample's top ``k`` genes whose score is at least
    ``threshold`` x the sample's largest score (signed methods: positive scores only)."""
    rows = []
    names = np.asarray(gene_names).astype(str)
    for i, scores in enumerate(np.nan_to_num(sample_genes, nan=-np.inf)):
        order = np.argsort(-scores, kind="stable")[:k]
        best = scores[order[0]]
        keep = [
            g
            for g in order
            if np.isfinite(scores[g]) and scores[g] >= threshold * best and (scores[g] > 0 or not signed)
        ]
        for rank, g in enumerate(keep, start=1):
            rows.append(
                (
                    data.samples["sample"].iat[i],
                    classes[data.labels[i]],
                    classes[int(data.proba[i].argmax())],
                    names[g],
                    float(scores[g]),
                    rank,
                )
            )
    return pd.DataFrame(rows, columns=PER_SAMPLE_COLUMNS)


def explain_model(
    name: str,
    folder: Path,
    exp_dir: Path,
    out: Path,
    settings: Explain,
    device,
    seed: int,
    bio: biology.Context | None = None,
    variants: list[IndexedModel] = (),
) -> dict:
    """Every configured method for one trained model, then its layout-sensitivity check (``variants``: its trainer's
    models of it on other layouts) and the biology checks of its rankings (``bio``); returns its metrics entry. The
    held-out samples are read, explained and written a chunk at a time (``explain_method``): memory does not grow
    with their number beyond a few numbers per sample."""
    model, spec = load_classifier(folder, device)
    data = ModelInputs(exp_dir, spec)
    classes = spec["classes"]
    proba = data.predict(model, device)
    correct = proba.argmax(1) == data.labels
    entry = {
        "arch": spec["arch"],
        "input": data.kind,
        "samples": "correctly classified" if settings.correct_only else "all",
        "n_test": int(len(data.labels)),
        "n_explained": int(correct.sum() if settings.correct_only else len(correct)),
        "methods": {},
        "not_applicable": {},
    }
    held_out = data  # every held-out row: the shortcut audit's
    rows = np.flatnonzero(correct) if settings.correct_only else np.arange(len(correct))  # the explained ones
    if settings.correct_only:
        data = data.take(rows)
        log.info(
            "%s: explaining the %d of %d held-out test samples it classifies correctly",
            name,
            len(data.labels),
            len(correct),
        )
        if not len(data.labels):
            raise UserError(
                f"explain.correct_only: model '{name}' classifies no held-out test sample correctly; "
                "set explain.correct_only: false"
            )
    entry["per_sample_arrays"] = len(data.labels) <= settings.per_sample.arrays_max_samples
    if not entry["per_sample_arrays"]:
        log.info(
            "%s: %d samples explained, more than per_sample.arrays_max_samples (%d): no attributions.npy or "
            "sample_genes.npy (the class means, rankings, sample_top_genes.csv and the h5ad layers are "
            "complete)",
            name,
            len(data.labels),
            settings.per_sample.arrays_max_samples,
        )
    gene_names = data.gene_names
    entry["gene_map"] = gene_names is not None
    if gene_names is None:
        log.info("%s: the '%s' inputs have no pixel->gene map: attributions stay in input space", name, data.kind)
    markers = (
        read_markers(settings.markers, classes, gene_names, symbols_of(data, gene_names))
        if settings.markers and gene_names is not None
        else None
    )
    kind = data.kind if data.kind == "vector" else ("image" if data.array.ndim == 4 else "volume")
    conformal = (
        pd.read_csv(folder / "test_conformal.csv", dtype={"sample": str, "set": str}, keep_default_na=False)
        if (folder / "test_conformal.csv").is_file()
        else None
    )
    h5ad = (
        None
        if gene_names is None
        else open_anndata(out / name / "attributions.h5ad", data, classes, settings, conformal)
    )
    explained = ExplainedModel(model, name, data, classes, markers, device, seed)
    try:
        gene_means: dict[str, np.ndarray] = {}
        for method_name in settings.methods:
            reason = METHODS[method_name].not_applicable(kind, spec.get("arch"))
            if reason is not None:
                entry["not_applicable"][method_name] = reason
                log.info("%s: %s skipped (%s)", name, method_name, reason)
                continue
            result, means = explain_method(
                explained, method_name, settings, out / name / method_name, h5ad, entry["per_sample_arrays"]
            )
            entry["methods"][method_name] = result
            if means is not None:
                gene_means[method_name] = means
        if settings.shortcuts.enabled and kind != "volume":
            entry["shortcuts"] = audit_model(held_out, gene_means, settings.shortcuts, seed)
        edges = {m: r.pop("shortcuts") for m, r in entry["methods"].items() if "shortcuts" in r}
        if settings.shortcuts.enabled and edges:  # volumes: the maps' share outside the brain and at the edge
            entry["shortcuts"] = {
                "volume": edges,
                "flagged": [f"{m}: {n}" for m, e in edges.items() for n in e["flags"]],
            }
        if settings.per_sample.trust:  # after the methods: it reads the trust method's faithfulness.csv
            table, entry["sample_trust"] = sample_trust(
                explained, settings, exp_dir, spec, conformal, list(entry["methods"]), out / name
            )
            if h5ad is not None:
                h5ad.add_obs(obs_columns(table))
        if variants and settings.layout_sensitivity.enabled:
            method = settings.layout_method
            entry["layout_sensitivity"] = (
                layout_sensitivity(
                    explained, held_out, rows, gene_means[method], list(variants), exp_dir, settings, out / name
                )
                if method in gene_means
                else {"skipped": f"{method} gave no gene ranking of {name} ({entry['not_applicable'].get(method)})"}
            )
        tables, de = {}, None
        if bio is not None and gene_names is None:
            entry["biology_absent"] = (
                "its inputs are volumes"
                if kind == "volume"
                else "its inputs have no pixel->gene map (a sample-spot image)"
            ) + ": there are no gene rankings to compare with differential expression or gene sets"
        elif bio is not None and gene_means:
            rankings = {m: (g, METHODS[m].signed) for m, g in gene_means.items()}
            result = biology.assess_model(
                name, bio, spec, gene_names, symbols_of(data, gene_names), classes, rankings, out / name / "biology"
            )
            if result is None:
                entry["biology_absent"] = "the gene values the model read are not stored (preprocess.save_vectors)"
            else:
                tables, de = result.pop("tables"), result.pop("de")
                entry["biology"] = result
        if h5ad is not None and gene_means:
            finish_anndata(h5ad, gene_names, classes, gene_means, entry, settings, de, tables)
        elif h5ad is not None:
            h5ad.abort()
    except BaseException:
        if h5ad is not None:
            h5ad.abort()
        raise
    return entry


def explain_method(
    explained: ExplainedModel,
    method_name: str,
    settings: Explain,
    folder: Path,
    h5ad: AnnDataFile | None,
    arrays: bool,
) -> tuple[dict, np.ndarray | None]:
    """One method on every explained sample, ``settings.chunk_size`` samples at a time: per chunk the attributions,
    their genes, the class sums, the per-sample top genes and (``arrays``) the per-sample arrays are written and the
    rows the trust checks and figures read are kept; then the class maps, rankings, figures and trust checks. Returns
    the method's metrics entry and its (n_classes, n_genes) class-mean gene attributions (None without genes)."""
    name, data, classes = explained.name, explained.data, explained.classes
    (folder / "figures").mkdir(parents=True)
    method = make_method(method_name, explained.model, settings, data, explained.device, explained.seed)
    gene_names = data.gene_names
    n, nc = len(data.labels), len(classes)
    dtype = np.dtype(settings.attribution_dtype)
    shown = (
        subset(data.labels, settings.per_sample.figure_per_class * len(classes))
        if settings.per_sample.figure_per_class
        else np.zeros(0, dtype=int)
    )
    read_later = [shown]
    if settings.faithfulness.enabled:
        read_later.append(subset(data.labels, settings.faithfulness.max_samples))
    if settings.sanity.enabled:
        read_later.append(subset(data.labels, settings.sanity.max_samples))
    kept, kept_genes = KeptRows(np.concatenate(read_later)), KeptRows(shown)
    attr_means, genes_means = ClassMeans(nc), ClassMeans(nc)
    writers: list = []
    if arrays:
        writers.append(attr_file := NpyRows(folder / "attributions.npy", data.array.shape, dtype))
    genes_file = layer = top_file = None
    if gene_names is not None:
        if arrays and data.kind != "vector":  # for vectors these are attributions.npy already
            writers.append(genes_file := NpyRows(folder / "sample_genes.npy", (n, len(gene_names)), dtype))
        writers.append(top_file := CsvRows(folder / "sample_top_genes.csv", PER_SAMPLE_COLUMNS))
        layer = h5ad.dense(f"layers/{method_name}", dtype) if h5ad is not None else None
    volumes = VolumeChecks(data, classes, method.signed, folder, nifti=arrays) if data.masks is not None else None
    torch.manual_seed(explained.seed)
    try:
        for start, attr in attribute_chunks(
            method,
            data.array,
            data.labels,
            explained.device,
            settings.batch_size,
            settings.chunk_size,
            f"{name} {method_name}",
            scale=data.scale,
        ):
            rows = np.arange(start, start + len(attr))
            labels = data.labels[start : start + len(attr)]
            attr_means.add(attr, labels)
            kept.offer(start, attr)
            if arrays:
                attr_file.write(attr)
            if volumes is not None:
                volumes.add(attr, rows)
            if gene_names is None:
                continue
            genes = data.to_genes(attr, rows).astype(np.float32)
            genes_means.add(genes, labels)
            kept_genes.offer(start, genes)
            if genes_file is not None:
                genes_file.write(genes)
            if layer is not None:
                layer.write(genes)
            top_file.write(
                per_sample_top(
                    genes,
                    data.take(rows),
                    classes,
                    gene_names,
                    method.signed,
                    settings.per_sample.top_k,
                    settings.per_sample.threshold,
                )
            )
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    result = {"top_k": settings.top_k, "signed": method.signed, "description": method.description}
    if getattr(method, "layer_name", None):
        result["layer"] = method.layer_name
    ranking = pd.DataFrame(columns=["class", "rank", "gene", "score"])
    gene_class_means = None
    if gene_names is not None:
        gene_class_means = genes_means.result()
        table, ranking, scores = write_gene_rankings(
            folder, gene_class_means, classes, gene_names, explained.markers, settings.top_k, settings.precision_k
        )
        result.update(scores)
        plot_top_genes_heatmap(
            table,
            ranking,
            folder / "figures" / "top_genes_heatmap.png",
            f"{name} · {method_name}: each class's top {settings.top_k} genes across all classes",
            signed=method.signed,
        )
        if explained.markers is not None:
            log.info(
                "%s %s: planted-marker precision@%d = %.3f (per class %s)",
                name,
                method_name,
                settings.precision_k,
                result[f"marker_precision_at_{settings.precision_k}"],
                json.dumps(result["per_class_precision"]),
            )
    class_maps = attr_means.result().astype(np.float32)
    np.save(folder / "class_maps.npy", class_maps)
    plot_class_maps(
        class_maps,
        classes,
        ranking,
        data.genes_table,
        folder / "figures" / "class_maps.png",
        f"{name} · {method_name}: class means over held-out test samples"
        + (
            ""
            if data.kind == "vector"
            else " (top genes circled)"
            if data.gmap is not None
            else " (no gene map: input space only)"
        ),
        signed=method.signed,
        feature_names=gene_names,
    )
    if volumes is not None:
        result.update(volumes.finish())
    if len(shown) and volumes is not None:
        plot_volume_overlays(
            volumes.overlay_entries(shown, kept[shown]),
            folder / "figures" / "overlays.png",
            f"{name} · {method_name}: held-out patients, the map's planes through the tumour",
        )
    elif len(shown):
        plot_samples(
            ShownSamples(
                inputs=data.array[shown] * data.scale,
                attr=kept[shown],
                names=data.samples["sample"].to_numpy()[shown],
                labels=np.asarray(classes)[data.labels[shown]],
                predictions=np.asarray(classes)[data.proba[shown].argmax(1)],
                sample_genes=None if gene_names is None else kept_genes[shown],
                gene_names=gene_names,
            ),
            data.genes_table,
            folder / "figures" / "samples.png",
            f"{name} · {method_name}: held-out test samples, input beside its attribution",
            signed=method.signed,
        )
    result.update(trust(explained, method_name, settings, kept, folder))
    return result, gene_class_means


def run(stage: StageRun) -> None:
    keep_out()  # TensorFlow never loads in a torch stage process (see shared/frameworks.py)
    exp = stage.exp
    settings: Explain = exp.section("explain")
    device = choose_device(exp.device)
    stage.device = describe_device(device)
    summary = Explanations()
    bio = biology.Context(stage.exp_dir, settings.biology, exp.seed) if settings.biology.enabled else None
    baselines = []
    classifiers = stage.providers("classifiers", required=True)
    layout_models = read_layouts_index(classifiers)  # the layout-sensitivity check's (preprocess.layout_sensitivity)
    for indexed in read_models_index(classifiers):
        name, trainer, entry = indexed.name, indexed.trainer, indexed.entry
        if entry.get("kind") == "baseline" and entry.get("framework") == "sklearn":
            baselines.append(name)
        if entry.get("framework") != FRAMEWORK or entry.get("kind") == "baseline":
            summary.not_explained[name] = (
                f"{entry.get('framework')} {entry.get('kind')} model of {trainer}: "
                f"explain computes attributions of {FRAMEWORK} networks"
            )
            continue
        if entry.get("input", {}).get("kind") not in INPUT_KINDS:
            summary.not_explained[name] = (
                f"{entry['input'].get('kind')} model of {trainer}: explained by its "
                f"trainer (explain reads {' and '.join(INPUT_KINDS)} inputs)"
            )
            continue
        summary.models[name] = ModelExplanations.from_json(
            {
                "provider": trainer,
                **explain_model(
                    name,
                    indexed.folder,
                    stage.exp_dir,
                    stage.out,
                    settings,
                    device,
                    exp.seed,
                    bio,
                    [v for v in layout_models if v.trainer == trainer and v.entry["model"] == name],
                ),
            }
        )
    if bio is not None and baselines and settings.biology.baselines:
        summary.baselines_biology = baselines_biology(stage, bio, baselines)
    seconds = [m.biology["seconds"] for m in summary.models.values() if m.biology]
    if bio is not None:
        seconds.append((summary.baselines_biology or {}).get("seconds", 0.0))
        summary.biology_seconds = round(sum(seconds), 2)
        stage.record(biology_seconds=summary.biology_seconds)
    write_explanations(stage.out, summary)


def baselines_biology(stage: StageRun, bio: biology.Context, names: list[str]) -> dict:
    """The baselines' own importances (refit on the training split) through the same checks as the methods'."""
    t0 = time.time()
    datasets = stage.providers("dataset")
    if not datasets:
        return {}
    dataset = Dataset.open(next(iter(datasets.values())))
    if dataset.vectors() is None:
        return {}
    genes_table = dataset.genes()
    genes = genes_table["gene"].to_numpy()
    symbols = genes_table["symbol"].astype(str).to_numpy() if "symbol" in genes_table else None
    spec = {"input": dataset.model_input("vector")}
    prepared = bio.prepared(spec, genes, symbols, dataset.classes)
    rankings = {
        name: (
            importances.baseline_importances(name, prepared[0], stage.exp.seed, bio.settings.permutation_repeats),
            True,
        )
        for name in names
    }
    result = biology.assess_model(
        "baselines", bio, spec, genes, symbols, dataset.classes, rankings, stage.out / "baselines" / "biology"
    )
    result.pop("tables")
    result.pop("de")
    result["seconds"] = round(time.time() - t0, 2)
    return result


if __name__ == "__main__":
    raise SystemExit(main("explain", run))
