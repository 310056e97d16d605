"""python -m stages.explain --config FILE: attributions, class maps, gene rankings, marker precision."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shared.artifacts import StageRun, write_json_atomic
from shared.attribution_figures import plot_class_maps, plot_faithfulness, plot_samples, plot_top_genes_heatmap
from shared.devices import choose_device, describe_device
from shared.errors import UserError
from shared.evaluation.rankings import class_means, read_markers, write_gene_rankings
from shared.frameworks import keep_out
from shared.genemap import PixelGeneMap
from shared.logs import get_logger
from shared.models import load_classifier
from shared.stage import main

from . import biology
from .attributions import attribute_chunks, members, to_tensor
from .biology import importances
from .methods import METHODS
from .params import Explain
from .quality import agreement, faithfulness, random_curves, randomisation
from .store import AnnDataFile, ClassMeans, CsvRows, KeptRows, LazyRows, NpyRows

log = get_logger("stages.explain")
#: the inputs explain reads (preprocess's images and vectors); a trainer with other inputs (MRI) explains its own
INPUT_KINDS = ("image", "vector")
#: the model files explain can load (shared.models.load_classifier); other frameworks explain their own models
FRAMEWORK = "torch"


class ModelInputs:
    """The held-out test inputs a model reads, found through its spec (``model.json``'s ``input``; paths relative
    to the experiment folder): the stored array (its test rows, read when indexed) and its scaling, the samples, and
    for genes the names, the pixel->gene map and the gene values the images were rendered from. ``take(rows)`` keeps
    some of the samples."""

    def __init__(self, exp_dir: Path, spec: dict):
        inp = spec["input"]
        self.kind, self.scale = inp["kind"], float(inp.get("scale", 1.0))
        samples = pd.read_csv(exp_dir / inp["samples"], dtype={"sample": str, "label": str})
        rows = np.flatnonzero(samples["split"].to_numpy() == "test")
        self.samples = samples.iloc[rows].reset_index(drop=True)
        self.labels = samples["label_index"].to_numpy()[rows]
        # read a chunk of rows at a time (explain_method), so the test split's size does not bound memory
        self.array = LazyRows(exp_dir / inp["array"], rows)
        # the training samples as measured (not augmented copies): the reference distribution of some methods
        real = samples["augmented_from"].isna() if "augmented_from" in samples else True
        self._training = (exp_dir / inp["array"], np.flatnonzero((samples["split"] == "train") & real))
        self._backgrounds: dict = {}
        self.gmap = PixelGeneMap.load(exp_dir / inp["gene_map"]) if inp.get("gene_map") else None
        self.gene_values = LazyRows(exp_dir / inp["gene_values"], rows) if inp.get("gene_values") else None
        features = exp_dir / inp["features"] if inp.get("features") else None
        # genes.csv: gene (in column order) and, for images, the pixel (row, col) each gene sits on
        self.genes_table = (
            pd.read_csv(features, dtype={"gene": str}) if features is not None and features.is_file() else None
        )
        self.features = None if self.genes_table is None else self.genes_table["gene"].to_numpy()
        self.proba: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> ModelInputs:
        out = copy.copy(self)
        out.samples = self.samples.iloc[rows].reset_index(drop=True)
        out.labels, out.array = self.labels[rows], self.array.take(rows, axis=0)
        out.gene_values = None if self.gene_values is None else self.gene_values.take(rows, axis=0)
        out.proba = None if self.proba is None else self.proba[rows]
        return out

    def tensors(self, rows: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's inputs and the true classes of ``rows``, on the device."""
        return (to_tensor(self.array[rows], device, self.scale), torch.from_numpy(self.labels[rows]).to(device))

    def background(self, n: int, seed: int, device) -> torch.Tensor:
        """``n`` training samples drawn at random (seeded; all of them when there are fewer), as model inputs."""
        key = (n, seed, str(device))
        if key not in self._backgrounds:
            path, rows = self._training
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False))
            self._backgrounds[key] = to_tensor(LazyRows(path, rows)[np.arange(len(rows))], device, self.scale)
        return self._backgrounds[key]

    def predict(self, model, device, batch: int = 256) -> np.ndarray:
        with torch.no_grad():
            self.proba = np.concatenate(
                [
                    torch.softmax(model(to_tensor(self.array[s : s + batch], device, self.scale)).float(), 1)
                    .cpu()
                    .numpy()
                    for s in range(0, len(self.array), batch)
                ]
            )
        return self.proba

    @property
    def gene_names(self) -> np.ndarray | None:
        """Genes the attributions can be returned to (None: they stay in image space)."""
        if self.kind == "vector":
            return self.features
        return None if self.gmap is None else self.gmap.genes

    def to_genes(self, attr: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, ...) attributions (of all samples, or of ``rows``) -> (n, n_genes): as they are for vectors, through
        the map for images; without genes, the flattened input elements."""
        if self.kind == "vector" or self.gene_names is None:
            return attr.reshape(len(attr), -1)
        values = None if self.gene_values is None else self.gene_values[slice(None) if rows is None else rows]
        return self.gmap.gene_attributions(attr, values)


def subset(labels: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` rows, taking the classes in turn (their first samples first), so every class is represented."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rows: list[int] = []
    while len(rows) < min(n, len(labels)):
        for members_c in by_class:
            if members_c and len(rows) < n:
                rows.append(members_c.pop(0))
    return np.sort(np.asarray(rows, dtype=int))


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


def make_method(method_name: str, net, p: Explain, data: ModelInputs, device, seed: int):
    """The method ``method_name`` of the network ``net`` (the model, a fold model or a randomised copy) with its
    configured options and, for methods that compare with training samples, their seeded draw (the same draw for
    every network)."""
    cls, options = METHODS[method_name], p.options(method_name)
    background = data.background(options.background, seed, device) if cls.needs_background else None
    return cls(net, options, background)


def trust(
    model,
    method_name: str,
    p: Explain,
    data: ModelInputs,
    attr,
    classes: list[str],
    device,
    seed: int,
    folder: Path,
    cache: dict,
) -> dict:
    """Faithfulness, sanity and stability figures of one method (each on a bounded subset of the explained
    samples; ``attr[rows]`` their attributions: an array or the ``KeptRows`` of explain_method); ``cache`` keeps
    the random order's curves, the same reference for every method of a model."""
    out: dict = {}
    method_cls = METHODS[method_name]
    if p.faithfulness.enabled:
        t0 = time.time()
        rows = subset(data.labels, p.faithfulness.max_samples)
        x, target = data.tensors(rows, device)
        if "random" not in cache:
            cache["random"] = random_curves(model, x, target, p.faithfulness.steps, seed)
        f = faithfulness(
            model,
            x,
            target,
            attr[rows],
            method_cls.signed,
            p.faithfulness.steps,
            seed,
            p.faithfulness.margin,
            reference=cache["random"],
        )
        aucs = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")
        table = pd.DataFrame(
            {
                "sample": data.samples["sample"].to_numpy()[rows],
                "class": np.asarray(classes)[data.labels[rows]],
                **{k: f[k] for k in aucs},
            }
        )
        table.to_csv(folder / "faithfulness.csv", index=False)
        per_class = table.groupby("class", sort=False)[list(aucs)].mean()
        plot_faithfulness(f, folder / "figures" / "faithfulness.png", method_name)
        out["faithfulness"] = {
            "n_samples": int(len(rows)),
            "steps": p.faithfulness.steps,
            **{k: float(table[k].mean()) for k in aucs},
            **{
                k: f[k]
                for k in (
                    "p_deletion",
                    "p_insertion",
                    "deletion_better_than_random",
                    "insertion_better_than_random",
                    "better_than_random",
                )
            },
            "per_class": {c: {k: float(v) for k, v in r.items()} for c, r in per_class.iterrows()},
            "seconds": round(time.time() - t0, 2),
        }
        log.info(
            "%s: deletion AUC %.3f (random %.3f), insertion AUC %.3f (random %.3f)%s",
            method_name,
            out["faithfulness"]["deletion_auc"],
            out["faithfulness"]["random_deletion_auc"],
            out["faithfulness"]["insertion_auc"],
            out["faithfulness"]["random_insertion_auc"],
            "" if f["better_than_random"] else ": NO BETTER THAN RANDOM",
        )
    if p.sanity.enabled:
        t0 = time.time()
        rows = subset(data.labels, p.sanity.max_samples)
        x, target = data.tensors(rows, device)
        make = lambda net: make_method(method_name, net, p, data, device, seed)  # noqa: E731
        r = randomisation(model, make, x, target, attr[rows], seed)
        pd.DataFrame(
            [{"step": i + 1, **c} for i, c in enumerate(r["cascade"])]
            + [{"step": "all", "randomised_down_to": "all at once", "spearman": r["all_at_once"]}]
        ).to_csv(folder / "sanity.csv", index=False)
        insensitive = bool(r["all_at_once"] >= p.sanity.threshold)
        out["sanity"] = {
            "n_samples": int(len(rows)),
            "spearman_all_at_once": r["all_at_once"],
            "cascade": r["cascade"],
            "threshold": p.sanity.threshold,
            "insensitive_to_model": insensitive,
            "seconds": round(time.time() - t0, 2),
        }
        log.info(
            "%s: rank correlation with a randomised model %.3f%s",
            method_name,
            r["all_at_once"],
            ": INSENSITIVE TO THE MODEL" if insensitive else "",
        )
    if p.stability.enabled:
        out["stability"] = stability(model, method_name, p, data, classes, device, seed)
    return out


def stability(model, method_name: str, p: Explain, data: ModelInputs, classes: list[str], device, seed: int) -> dict:
    """How much a class's top genes depend on the fold model explained (each fold model explained on its own) and,
    for stochastic methods (SmoothGrad), on the random draws (the method run again with other seeds)."""
    t0 = time.time()
    rows = subset(data.labels, p.stability.max_samples)
    x, target = data.tensors(rows, device)

    def class_scores(net, draw_seed: int) -> np.ndarray:
        torch.manual_seed(draw_seed)
        method = make_method(method_name, net, p, data, device, seed)
        attr = method.attribute(x.clone().requires_grad_(True), target).detach().cpu().numpy()
        return class_means(data.to_genes(attr, rows), data.labels[rows], len(classes))

    out: dict = {"n_samples": int(len(rows))}
    folds = members(model)
    if len(folds) > 1:
        out["folds"] = agreement([class_scores(m, seed) for m in folds], classes, p.top_k)
    if METHODS[method_name].stochastic:
        out["draws"] = agreement([class_scores(model, seed + d) for d in range(p.stability.draws)], classes, p.top_k)
    out["seconds"] = round(time.time() - t0, 2)
    shown = {
        k: f"Spearman {v['spearman']:.3f}, top {p.top_k} shared {v['shared_top_k']:.2f}"
        for k, v in out.items()
        if isinstance(v, dict)
    }
    log.info(
        "%s: stability across fold models: %s%s",
        method_name,
        shown.get("folds", "n/a (one model)"),
        f"; across {p.stability.draws} draws: {shown['draws']}" if "draws" in shown else "",
    )
    return out


def explain_model(
    name: str, folder: Path, exp_dir: Path, out: Path, p: Explain, device, seed: int, bio: biology.Context | None = None
) -> dict:
    """Every configured method for one trained model, then the biology checks of its rankings (``bio``); returns
    its metrics entry. The held-out samples are read, explained and written a chunk at a time (``explain_method``):
    memory does not grow with their number beyond a few numbers per sample."""
    model, spec = load_classifier(folder, device)
    data = ModelInputs(exp_dir, spec)
    classes = spec["classes"]
    proba = data.predict(model, device)
    correct = proba.argmax(1) == data.labels
    entry = {
        "arch": spec["arch"],
        "input": data.kind,
        "samples": "correctly classified" if p.correct_only else "all",
        "n_test": int(len(data.labels)),
        "n_explained": int(correct.sum() if p.correct_only else len(correct)),
        "methods": {},
        "not_applicable": {},
    }
    if p.correct_only:
        data = data.take(np.flatnonzero(correct))
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
    entry["per_sample_arrays"] = len(data.labels) <= p.per_sample.arrays_max_samples
    if not entry["per_sample_arrays"]:
        log.info(
            "%s: %d samples explained, more than per_sample.arrays_max_samples (%d): no attributions.npy or "
            "sample_genes.npy (the class means, rankings, sample_top_genes.csv and the h5ad layers are "
            "complete)",
            name,
            len(data.labels),
            p.per_sample.arrays_max_samples,
        )
    gene_names = data.gene_names
    entry["gene_map"] = gene_names is not None
    if gene_names is None:
        log.info("%s: the '%s' inputs have no pixel->gene map: attributions stay in input space", name, data.kind)
    markers = (
        read_markers(p.markers, classes, gene_names, symbols_of(data, gene_names))
        if p.markers and gene_names is not None
        else None
    )
    kind = data.kind if data.kind == "vector" else ("image" if data.array.ndim == 4 else "volume")
    h5ad = None if gene_names is None else open_anndata(out / name / "attributions.h5ad", data, classes, p)
    try:
        gene_means: dict[str, np.ndarray] = {}
        cache: dict = {}
        for method_name in p.methods:
            reason = METHODS[method_name].not_applicable(kind, spec.get("arch"))
            if reason is not None:
                entry["not_applicable"][method_name] = reason
                log.info("%s: %s skipped (%s)", name, method_name, reason)
                continue
            result, means = explain_method(
                model,
                name,
                method_name,
                data,
                classes,
                markers,
                p,
                device,
                seed,
                out / name / method_name,
                h5ad,
                entry["per_sample_arrays"],
                cache,
            )
            entry["methods"][method_name] = result
            if means is not None:
                gene_means[method_name] = means
        tables, de = {}, None
        if bio is not None and gene_names is None:
            entry["biology_absent"] = (
                "its inputs have no pixel->gene map (a sample-spot image): there are no gene "
                "rankings to compare with differential expression or gene sets"
            )
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
            finish_anndata(h5ad, gene_names, classes, gene_means, entry, p, de, tables)
        elif h5ad is not None:
            h5ad.abort()
    except BaseException:
        if h5ad is not None:
            h5ad.abort()
        raise
    return entry


def explain_method(
    model,
    name: str,
    method_name: str,
    data: ModelInputs,
    classes: list[str],
    markers,
    p: Explain,
    device,
    seed: int,
    folder: Path,
    h5ad: AnnDataFile | None,
    arrays: bool,
    cache: dict,
) -> tuple[dict, np.ndarray | None]:
    """One method on every explained sample, ``p.chunk_size`` samples at a time: per chunk the attributions, their
    genes, the class sums, the per-sample top genes and (``arrays``) the per-sample arrays are written and the rows
    the trust checks and figures read are kept; then the class maps, rankings, figures and trust checks. Returns
    the method's metrics entry and its (n_classes, n_genes) class-mean gene attributions (None without genes)."""
    (folder / "figures").mkdir(parents=True)
    method = make_method(method_name, model, p, data, device, seed)
    gene_names = data.gene_names
    n, nc = len(data.labels), len(classes)
    dtype = np.dtype(p.attribution_dtype)
    shown = (
        subset(data.labels, p.per_sample.figure_per_class * len(classes))
        if p.per_sample.figure_per_class
        else np.zeros(0, dtype=int)
    )
    read_later = [shown]
    if p.faithfulness.enabled:
        read_later.append(subset(data.labels, p.faithfulness.max_samples))
    if p.sanity.enabled:
        read_later.append(subset(data.labels, p.sanity.max_samples))
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
    torch.manual_seed(seed)
    try:
        for start, attr in attribute_chunks(
            method,
            data.array,
            data.labels,
            device,
            p.batch_size,
            p.chunk_size,
            f"{name} {method_name}",
            scale=data.scale,
        ):
            rows = np.arange(start, start + len(attr))
            labels = data.labels[start : start + len(attr)]
            attr_means.add(attr, labels)
            kept.offer(start, attr)
            if arrays:
                attr_file.write(attr)
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
                    p.per_sample.top_k,
                    p.per_sample.threshold,
                )
            )
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    result = {"top_k": p.top_k, "signed": method.signed, "description": method.description}
    if getattr(method, "layer_name", None):
        result["layer"] = method.layer_name
    ranking = pd.DataFrame(columns=["class", "rank", "gene", "score"])
    gene_class_means = None
    if gene_names is not None:
        gene_class_means = genes_means.result()
        table, ranking, scores = write_gene_rankings(
            folder, gene_class_means, classes, gene_names, markers, p.top_k, p.precision_k
        )
        result.update(scores)
        plot_top_genes_heatmap(
            table,
            ranking,
            folder / "figures" / "top_genes_heatmap.png",
            f"{name} · {method_name}: each class's top {p.top_k} genes across all classes",
            signed=method.signed,
        )
        if markers is not None:
            log.info(
                "%s %s: planted-marker precision@%d = %.3f (per class %s)",
                name,
                method_name,
                p.precision_k,
                result[f"marker_precision_at_{p.precision_k}"],
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
    if len(shown):
        plot_samples(
            data.array[shown] * data.scale,
            kept[shown],
            data.samples["sample"].to_numpy()[shown],
            np.asarray(classes)[data.labels[shown]],
            np.asarray(classes)[data.proba[shown].argmax(1)],
            None if gene_names is None else kept_genes[shown],
            gene_names,
            data.genes_table,
            folder / "figures" / "samples.png",
            f"{name} · {method_name}: held-out test samples, input beside its attribution",
            signed=method.signed,
        )
    result.update(trust(model, method_name, p, data, kept, classes, device, seed, folder, cache))
    return result, gene_class_means


def symbols_of(data: ModelInputs, gene_names) -> np.ndarray | None:
    """The genes' symbols when genes.csv has them in the order of ``gene_names``."""
    table = data.genes_table
    if (
        table is None
        or "symbol" not in table
        or len(table) != len(gene_names)
        or not (table["gene"].astype(str).to_numpy() == np.asarray(gene_names).astype(str)).all()
    ):
        return None
    return table["symbol"].astype(str).to_numpy()


def open_anndata(path: Path, data: ModelInputs, classes: list[str], p: Explain) -> AnnDataFile:
    """attributions.h5ad begun: obs the explained samples (label, prediction, p_true_class, correct, split), var the
    genes (and their symbols), X the gene values as the model saw them (vectors; for images the values they were
    rendered from), written a chunk of samples at a time; each method then adds its layer (``explain_method``)."""
    proba = data.proba
    obs = pd.DataFrame(
        {
            "label": pd.Categorical(np.asarray(classes)[data.labels], categories=classes),
            "prediction": pd.Categorical(np.asarray(classes)[proba.argmax(1)], categories=classes),
            "p_true_class": proba[np.arange(len(proba)), data.labels],
            "correct": proba.argmax(1) == data.labels,
            "split": "test",
        },
        index=pd.Index(data.samples["sample"].astype(str).to_numpy(), name="sample"),
    )
    var = pd.DataFrame(index=pd.Index(np.asarray(data.gene_names).astype(str), name="gene"))
    if data.genes_table is not None and "symbol" in data.genes_table:
        var["symbol"] = data.genes_table["symbol"].astype(str).to_numpy()
    h5ad = AnnDataFile(path, obs, var)
    try:
        values = data.array if data.kind == "vector" else data.gene_values
        if values is not None:
            x = h5ad.dense("X", np.float32)
            scale = data.scale if data.kind == "vector" else 1.0
            for start in range(0, len(data.labels), p.chunk_size):
                x.write(np.asarray(values[start : start + p.chunk_size], dtype=np.float32) * np.float32(scale))
    except BaseException:
        h5ad.abort()
        raise
    return h5ad


def finish_anndata(
    h5ad: AnnDataFile,
    gene_names,
    classes: list[str],
    gene_means: dict[str, np.ndarray],
    entry: dict,
    p: Explain,
    de: dict | None = None,
    tables: dict | None = None,
) -> None:
    """attributions.h5ad completed, for scanpy: varm the class means of each method's layer, uns the top genes and
    the trust figures; with the biology checks, uns['rank_genes_groups'] (Wilcoxon, training split; scanpy's own
    layout, so sc.pl.rank_genes_groups and sc.get.rank_genes_groups_df read it), uns['rank_genes_groups_t-test']
    and uns['biology'] (the tables)."""
    varm = {f"{m}_class_means": g.T.astype(np.float32) for m, g in gene_means.items()}
    genes = np.asarray(gene_names).astype(str)
    uns: dict = {
        "top_genes": {
            m: {
                c: genes[
                    np.argsort(-np.nan_to_num(varm[f"{m}_class_means"][:, k], nan=-np.inf), kind="stable")[: p.top_k]
                ]
                for k, c in enumerate(classes)
            }
            for m in gene_means
        }
    }
    uns["classes"] = list(classes)
    uns["methods"] = {
        m: {k: v for k, v in r.items() if k in ("signed", "description", "layer")} for m, r in entry["methods"].items()
    }
    uns["trust"] = json.dumps(
        {m: {k: r[k] for k in ("faithfulness", "sanity", "stability") if k in r} for m, r in entry["methods"].items()},
        default=float,
    )
    uns["config"] = json.dumps(p.model_dump(mode="json"))
    for result in (de or {}).values():
        uns[result["key"]] = result["uns"]
    if tables:
        uns["biology"] = {k: t.astype({c: str for c in t.columns if t[c].dtype == object}) for k, t in tables.items()}
    h5ad.finish({"varm": varm, "uns": uns})


def run(run: StageRun) -> None:
    keep_out()  # TensorFlow never loads in a torch stage process (see shared/frameworks.py)
    exp = run.exp
    p: Explain = exp.section("explain")
    device = choose_device(exp.device)
    run.device = describe_device(device)
    summary = {"target": "true class", "split": "held-out test", "models": {}, "not_explained": {}}
    where: dict[str, str] = {}
    bio = biology.Context(run.exp_dir, p.biology, exp.seed) if p.biology.enabled else None
    baselines = []
    for stage, folder in run.providers("classifiers", required=True).items():
        for entry in json.loads((folder / "models.json").read_text()):
            name = entry["name"]
            if entry.get("kind") == "baseline" and entry.get("framework") == "sklearn":
                baselines.append(name)
            if entry.get("framework") != FRAMEWORK or entry.get("kind") == "baseline":
                summary["not_explained"][name] = (
                    f"{entry.get('framework')} {entry.get('kind')} model of {stage}: "
                    f"explain computes attributions of {FRAMEWORK} networks"
                )
                continue
            if entry.get("input", {}).get("kind") not in INPUT_KINDS:
                summary["not_explained"][name] = (
                    f"{entry['input'].get('kind')} model of {stage}: explained by its "
                    f"trainer (explain reads {' and '.join(INPUT_KINDS)} inputs)"
                )
                continue
            if name in where:
                raise UserError(
                    f"two classifier providers name a model '{name}' ({where[name]} and {stage}): rename one"
                )
            where[name] = stage
            summary["models"][name] = {
                "provider": stage,
                **explain_model(name, folder / entry["folder"], run.exp_dir, run.out, p, device, exp.seed, bio),
            }
    if bio is not None and baselines and p.biology.baselines:
        summary["baselines_biology"] = baselines_biology(run, bio, baselines)
    seconds = [m["biology"]["seconds"] for m in summary["models"].values() if "biology" in m]
    if bio is not None:
        seconds.append(summary.get("baselines_biology", {}).get("seconds", 0.0))
        summary["biology_seconds"] = round(sum(seconds), 2)
        run.record(biology_seconds=summary["biology_seconds"])
    write_json_atomic(run.out / "metrics.json", summary)


def baselines_biology(run: StageRun, bio: biology.Context, names: list[str]) -> dict:
    """The baselines' own importances (refit on the training split) through the same checks as the methods'."""
    t0 = time.time()
    datasets = run.providers("dataset")
    if not datasets:
        return {}
    folder = next(iter(datasets.values()))
    rel = folder.relative_to(run.exp_dir)
    dataset = json.loads((folder / "dataset.json").read_text())
    if not (folder / "vectors.npy").is_file():
        return {}
    genes_table = pd.read_csv(folder / "genes.csv", dtype={"gene": str})
    genes = genes_table["gene"].to_numpy()
    symbols = genes_table["symbol"].astype(str).to_numpy() if "symbol" in genes_table else None
    spec = {"input": {"kind": "vector", "array": f"{rel}/vectors.npy", "samples": f"{rel}/samples.csv"}}
    prepared = bio.prepared(spec, genes, symbols, dataset["classes"])
    rankings = {
        name: (importances.baseline_importances(name, prepared[0], run.exp.seed, bio.p.permutation_repeats), True)
        for name in names
    }
    result = biology.assess_model(
        "baselines", bio, spec, genes, symbols, dataset["classes"], rankings, run.out / "baselines" / "biology"
    )
    result.pop("tables")
    result.pop("de")
    result["seconds"] = round(time.time() - t0, 2)
    return result


if __name__ == "__main__":
    raise SystemExit(main("explain", run))
