"""python -m stages.preprocess --config FILE: expression data -> images (or vectors) with the pixel->gene map.

Two passes over the rows, chunk by chunk: the first checks values and accumulates training statistics (and a
training subsample to fit the layout on); the second normalises, selects, scales and writes every sample.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shared import dataset
from shared.artifacts import StageRun
from shared.errors import UserError
from shared.evaluation.splits import apply_small_class_policy, holdout_split
from shared.logs import get_logger, progress
from shared.stage import main

from .augment import augment, augmentation_plan
from .covariates import QCAccumulator, covariates_table, named_covariates
from .formats.tables import read_gene_filter, strip_version
from .layouts import fit_layouts, layout_folder, write_layout
from .normalize import (
    GeneMoments,
    LoggedCheck,
    MinMaxScaler,
    highly_variable_genes,
    to_log1p,
    top_variance_genes,
)
from .npywriter import NpyWriter
from .params import Expression, Preprocess
from .source import iter_chunks, open_expression, sample_rows
from .transforms import build_transform, to_uint8

log = get_logger("stages.preprocess")
FIT_ROWS = 20000  # training samples kept in memory to fit gene selection (hvg) and the layout on


def _gene_columns(expression: Expression, var_names) -> np.ndarray:
    if not expression.gene_filter:
        return np.arange(len(var_names))
    wanted = read_gene_filter(expression.gene_filter)
    keep = np.flatnonzero([strip_version(g) in wanted for g in var_names])
    if not len(keep):
        raise UserError(f"{expression.gene_filter}: no gene of the filter matches a gene id of {expression.path}")
    log.info("gene filter kept %d of %d genes", len(keep), len(var_names))
    return keep


def _prepare(X, cols: np.ndarray, expression: Expression, settings: Preprocess):
    return to_log1p(X[:, cols], expression.scale, settings.target_sum)


def run(stage: StageRun) -> None:
    exp = stage.exp
    expression: Expression = exp.section("expression")
    settings: Preprocess = exp.section("preprocess")
    out = stage.out

    adata, backed = open_expression(expression)
    log.info(
        "read %s: %d samples x %d genes, %d classes%s",
        expression.path,
        adata.n_obs,
        adata.n_vars,
        adata.obs["label"].nunique(),
        " (backed, in chunks)" if backed else "",
    )
    cols = _gene_columns(expression, adata.var_names)
    labels = adata.obs["label"].to_numpy().astype(str)
    if len(set(labels)) < 2:
        raise UserError(
            f"{expression.labels or expression.path}: expression.label_key '{expression.label_key}' holds one class "
            f"only ({labels[0]!r}); a classifier needs at least two: choose another label column"
        )
    groups = adata.obs["group"].to_numpy().astype(str) if "group" in adata.obs else None
    named = named_covariates(adata.obs, expression.covariates)
    small = settings.small_classes
    kept, left_out = apply_small_class_policy(
        labels, small.policy, small.min_samples, source=expression.labels or expression.path
    )
    if left_out:
        log.warning(
            "left out %d classes with fewer than preprocess.small_classes.min_samples=%d samples (%d samples): %s",
            len(left_out),
            small.min_samples,
            sum(left_out.values()),
            ", ".join(f"{c} ({n})" for c, n in left_out.items()),
        )
        labels = labels[kept]
        groups = None if groups is None else groups[kept]
        named = named[kept]
    obs_names = np.asarray(adata.obs_names).astype(str)[kept]
    n_obs = len(labels)
    classes = sorted(np.unique(labels))
    label_index = np.searchsorted(classes, labels)
    is_test = holdout_split(labels, groups, settings.test_size, exp.seed)
    train = np.flatnonzero(~is_test)
    fit_rows = sample_rows(train, FIT_ROWS, exp.seed)

    # pass 1: value checks, QC covariates (every gene, as read), training moments, and the training subsample the
    # layout is fitted on
    moments = GeneMoments(len(cols))
    logged = LoggedCheck()
    qc = QCAccumulator(expression.scale)
    fit_parts = []
    for start, stop, X in progress(
        _kept(iter_chunks(adata, settings.chunk_size, expression, backed), kept), "statistics", unit="chunk"
    ):
        qc.update(X)
        if expression.scale == "counts":
            logged.update(X)
        Xn = _prepare(X, cols, expression, settings)
        moments.update(Xn[~is_test[start:stop]])
        in_fit = fit_rows[(fit_rows >= start) & (fit_rows < stop)] - start
        fit_parts.append(Xn[in_fit])
    fit_X = sp.vstack(fit_parts).tocsr() if sp.issparse(fit_parts[0]) else np.vstack(fit_parts)
    if warning := logged.warning(expression.path):
        log.warning(warning)

    if settings.gene_selection == "hvg":
        genes_idx = highly_variable_genes(fit_X, settings.n_genes)
    else:
        genes_idx = top_variance_genes(moments.var, settings.n_genes)
    genes = np.asarray(adata.var_names[cols[genes_idx]]).astype(str)
    scaler = MinMaxScaler(moments.min[genes_idx].astype(np.float32), moments.max[genes_idx].astype(np.float32))
    log.info("kept %d genes (%s, training split)", len(genes), settings.gene_selection)

    transform = build_transform(settings)
    layouts = {}  # the layout-sensitivity check's other layouts (validated in params: inductive transforms only)
    if not transform.transductive:
        fit_values = scaler.transform(fit_X[:, genes_idx])
        transform.fit(fit_values, genes, exp.seed)
        if settings.layout_sensitivity.enabled:
            layouts = fit_layouts(settings, fit_values, genes, exp.seed, transform)
        del fit_values
    del fit_X, fit_parts

    aug = settings.augmentation
    plan = augmentation_plan(label_index[train], aug.min_samples) if aug.method != "none" else {}
    if plan and transform.transductive:
        raise UserError(f"preprocess.augmentation: not possible with the transductive '{settings.transform}' transform")
    n_aug = sum(plan.values())
    n_total = n_obs + n_aug
    if n_aug:
        log.info(
            "augmentation (%s) adds %d training samples: %s",
            aug.method,
            n_aug,
            {classes[c]: k for c, k in plan.items()},
        )

    # pass 2: every sample, normalised, selected, scaled; written as vectors and images
    keep_for_aug = np.isin(label_index, list(plan)) & ~is_test
    aug_source: list[np.ndarray] = []
    all_values = [] if transform.transductive else None
    with contextlib.ExitStack() as stack:
        vec_w = (
            stack.enter_context(NpyWriter(out / dataset.VECTORS, (n_total, len(genes)), np.float32))
            if settings.save_vectors or not transform.makes_images
            else None
        )
        img_w = (
            stack.enter_context(NpyWriter(out / dataset.IMAGES, (n_total, *transform.image_shape), np.uint8))
            if transform.makes_images and not transform.transductive
            else None
        )
        layout_w = {
            name: (
                t,
                stack.enter_context(
                    NpyWriter(layout_folder(out, name) / dataset.IMAGES, (n_total, *t.image_shape), np.uint8)
                ),
            )
            for name, (t, _) in layouts.items()
        }
        chunks = _kept(iter_chunks(adata, settings.chunk_size, expression, False), kept)
        for start, stop, X in progress(chunks, "images", unit="chunk"):
            values = scaler.transform(_prepare(X, cols, expression, settings)[:, genes_idx])
            if vec_w:
                vec_w.write(values)
            if img_w:
                img_w.write(transform.transform(values, np.uint8))
            for t, w in layout_w.values():
                w.write(t.transform(values, np.uint8))
            if all_values is not None:
                all_values.append(values)
            if plan:
                aug_source.append(values[keep_for_aug[start:stop]])
        aug_frame = None
        if plan:
            aug_frame, aug_values = _augment(
                np.vstack(aug_source),
                np.flatnonzero(keep_for_aug),
                plan,
                label_index,
                obs_names,
                groups,
                aug,
                exp.seed,
            )
            if vec_w:
                vec_w.write(aug_values)
            if img_w:
                img_w.write(transform.transform(aug_values, np.uint8))
            for t, w in layout_w.values():
                w.write(t.transform(aug_values, np.uint8))
    if transform.transductive:  # fitted on every sample at once, then rendered chunk by chunk
        transform.fit_all(np.vstack(all_values), exp.seed)
        del all_values
        with NpyWriter(out / dataset.IMAGES, (n_total, *transform.image_shape), np.uint8) as img_w:
            for start in range(0, n_total, settings.chunk_size):
                img_w.write(to_uint8(transform.render(slice(start, min(start + settings.chunk_size, n_total)))))

    samples = pd.DataFrame(
        {
            "sample": obs_names,
            "label": labels,
            "label_index": label_index,
            "split": np.where(is_test, "test", "train"),
        }
    )
    if groups is not None:
        samples["group"] = groups
    samples["augmented_from"] = ""
    if aug_frame is not None:
        samples = pd.concat([samples, aug_frame], ignore_index=True)
    dataset.write_samples(out / dataset.SAMPLES, samples)
    augmented = [] if aug_frame is None else list(aug_frame["sample"])
    dataset.write_covariates(out / dataset.COVARIATES, covariates_table(obs_names, named, qc.result(), augmented))
    _write_genes(out, adata, cols[genes_idx], genes, scaler, transform)

    counts = samples.groupby(["split", "label"]).size().unstack(fill_value=0)
    # the policy, and the classes it left out with their sample counts: train_torch names the key in its error on a
    # class too small for its folds, the report lists them
    small_classes = {"key": "preprocess.small_classes", **small.model_dump(), "left_out": left_out}
    # the layout-sensitivity check's layouts; the key only when there are some (a dataset without is unchanged)
    layouts_info = (
        {"layouts": {name: {**entry, **write_layout(out, name, t, genes)} for name, (t, entry) in layouts.items()}}
        if layouts
        else {}
    )
    dataset.write_info(
        out,
        {
            "classes": classes,
            "image_shape": list(transform.image_shape) if transform.image_shape else None,
            "n_genes": int(len(genes)),
            **transform.describe(),
            "gene_map": dataset.GENE_MAP if transform.gene_map is not None else None,
            "vectors": dataset.VECTORS if vec_w else None,
            "input_scale": expression.scale,
            "label_key": expression.label_key,
            "group_key": expression.group_key,
            "covariates": list(expression.covariates),
            "n_augmented": n_aug,
            "small_classes": small_classes,
            "counts": json.loads(counts.to_json()),
            **layouts_info,
        },
    )
    stage.record(
        n_samples=n_obs,
        n_train=int(len(train)),
        n_test=int(is_test.sum()),
        n_augmented=n_aug,
        left_out_classes=left_out,
        n_left_out=int((~kept).sum()),
    )


def _kept(chunks, kept: np.ndarray):
    """``chunks`` without the samples of left-out classes; ``start``/``stop`` count kept samples only."""
    at = 0
    for start, stop, X in chunks:
        rows = np.flatnonzero(kept[start:stop])
        if len(rows):
            yield at, at + len(rows), X if len(rows) == stop - start else X[rows]
        at += len(rows)


def _augment(source_values, source_rows, plan, label_index, obs_names, groups, aug, seed):
    """New training rows for each class of ``plan``; returns (samples table rows, values)."""
    rng = np.random.default_rng(seed + 1)
    frames, values = [], []
    for c, n_new in plan.items():
        rows = np.flatnonzero(label_index[source_rows] == c)
        new, src = augment(source_values[rows], n_new, aug.method, rng, aug.noise_sd)
        parents = source_rows[rows[src]]
        frame = pd.DataFrame(
            {
                "sample": [f"{obs_names[r]}~aug{i}" for i, r in enumerate(parents)],
                "label": None,
                "label_index": c,
                "split": "train",
                "augmented_from": np.asarray(obs_names[parents]).astype(str),
            }
        )
        if groups is not None:
            frame["group"] = groups[parents]
        frames.append(frame)
        values.append(new)
    frame = pd.concat(frames, ignore_index=True)
    return frame, np.vstack(values)


def _write_genes(out, adata, var_idx, genes, scaler, transform) -> None:
    table = pd.DataFrame({"gene": genes, "train_min": scaler.low, "train_max": scaler.high})
    if "symbol" in adata.var:
        table.insert(1, "symbol", adata.var["symbol"].to_numpy()[var_idx].astype(str))
    gmap = transform.gene_map
    if gmap is not None:  # a gene's (first) pixel; -1 for genes on no pixel (gene-grid keeps only n*n genes)
        w = gmap.weights.tocsc()
        on_map = np.diff(w.indptr) > 0
        c, r, col = np.unravel_index(np.asarray(w.argmax(axis=0)).ravel(), gmap.image_shape)
        table["channel"], table["row"], table["col"] = (np.where(on_map, a, -1) for a in (c, r, col))
        gmap.save(out / dataset.GENE_MAP)
    table.to_csv(out / dataset.GENES, index=False)
    if transform.coords is not None:
        pd.DataFrame({"gene": genes, "row": transform.coords[:, 0], "col": transform.coords[:, 1]}).to_csv(
            out / "gene_coords.csv", index=False
        )


if __name__ == "__main__":
    raise SystemExit(main("preprocess", run))
