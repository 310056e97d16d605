"""python -m stages.train_tf_gradcam --config FILE: Keras CNNs on preprocess's images, the shared protocol, and their
Grad-CAM family explanations in explain's layout."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "3"
)  # TF C++ logs (tf.data graph notices) off; errors surface as Python exceptions

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shared.artifacts import StageRun  # noqa: E402
from shared.attribution_figures import plot_class_maps, plot_top_genes_heatmap  # noqa: E402
from shared.dataset import Dataset  # noqa: E402
from shared.errors import UserError  # noqa: E402
from shared.evaluation.explanations import Explanations, ModelExplanations, write_explanations  # noqa: E402
from shared.evaluation.rankings import class_means, read_markers, write_gene_rankings  # noqa: E402
from shared.evaluation.results import ModelResult, fold_row, write_models_index, write_result  # noqa: E402
from shared.evaluation.splits import Protocol  # noqa: E402
from shared.genemap import PixelGeneMap  # noqa: E402
from shared.logs import get_logger  # noqa: E402
from shared.stage import main  # noqa: E402

from .params import TrainTfGradcam  # noqa: E402

log = get_logger("stages.train_tf_gradcam")


class Images:
    """preprocess's images as Keras reads them: (n, H, W, C) float32 in [0, 1], with the gene map, the gene values
    and genes.csv; the samples, classes and dataset.json are read through ``source``."""

    def __init__(self, folder: Path):
        self.source = Dataset.open(folder)
        stored = self.source.images()
        if stored is None:
            raise UserError(
                f"train_tf_gradcam: preprocess.transform '{self.source.info.get('transform')}' makes no images; "
                "use an image transform (gene-grid, deepinsight, ...)"
            )
        self.stored = stored  # (n, C, H, W) uint8
        self.shape = (int(self.stored.shape[2]), int(self.stored.shape[3]), int(self.stored.shape[1]))
        gene_map = self.source.gene_map_path()
        self.gmap = PixelGeneMap.load(gene_map) if gene_map is not None else None
        self.values = self.source.vectors()
        self.genes_table = self.source.genes()

    def x(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(
            np.asarray(self.stored[np.sort(rows)]).transpose(0, 2, 3, 1)[np.argsort(np.argsort(rows))], dtype=np.float32
        ) / np.float32(255)


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception as exc:  # pragma: no cover - older TF
        log.info("TensorFlow op determinism not available (%s)", exc)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(models, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of the fold models' mean logit."""
    return softmax(np.mean([m.predict(x, batch_size=batch_size, verbose=0) for m in models], axis=0))


def check_before_training(settings: TrainTfGradcam, data: Images) -> dict | None:
    """Errors a user should see before any training: deep models on small images, the CAM layer, gene rankings
    without a gene map, markers. Returns the markers."""
    from . import networks

    for arch in settings.models:
        model = networks.build(arch, data.shape, len(data.source.classes), settings.dropout)
        if settings.explain.methods and settings.explain.methods != ["guided_backprop"]:
            networks.target_layer(model, settings.explain.layer)
    if settings.explain.methods and data.gmap is None:
        raise UserError(
            f"train_tf_gradcam.explain.methods: preprocess.transform '{data.source.info.get('transform')}' "
            "has no pixel->gene map, so maps cannot be returned to genes; use a transform with one "
            "(gene-grid, deepinsight) or set train_tf_gradcam.explain.methods: []"
        )
    if settings.explain.markers and data.gmap is not None:
        return read_markers(settings.explain.markers, data.source.classes, data.gmap.genes)
    return None


def train(arch: str, settings: TrainTfGradcam, data: Images, proto: Protocol, stage: StageRun, seed: int):
    import keras

    from . import networks

    x_test = data.x(proto.test_rows)
    members, folds, history, cv = [], [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)
        seed_everything(seed + 1000 * r + k)
        model = networks.build(arch, data.shape, proto.n_classes, settings.dropout)
        model.compile(
            optimizer=keras.optimizers.Adam(settings.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        y = proto.labels
        weights = None
        if settings.class_weights == "balanced":
            counts = np.bincount(y[tr_rows], minlength=proto.n_classes).astype(float)
            weights = {c: float(len(tr_rows) / (proto.n_classes * n)) for c, n in enumerate(counts) if n > 0}
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=settings.patience,
            restore_best_weights=True,
            start_from_epoch=settings.min_epochs,
        )
        board = keras.callbacks.TensorBoard(log_dir=str(stage.out / arch / "tensorboard" / f"r{r}k{k}"))
        t0 = time.time()
        fit = model.fit(
            data.x(tr_rows),
            y[tr_rows],
            validation_data=(data.x(va_rows), y[va_rows]),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            class_weight=weights,
            shuffle=True,
            verbose=0,
            callbacks=[stop, board],
        )
        h = fit.history
        best = int(np.argmin(h["val_loss"]))
        log.info(
            "%s r%d fold %d/%d: %d epochs in %.1f s, best %d (val loss %.3f, accuracy %.3f)",
            arch,
            r,
            k + 1,
            settings.folds,
            len(h["loss"]),
            time.time() - t0,
            best + 1,
            h["val_loss"][best],
            h["val_accuracy"][best],
        )
        history += [
            {
                "repeat": r,
                "fold": k,
                "epoch": e,
                "train_loss": h["loss"][e],
                "train_accuracy": h["accuracy"][e],
                "val_loss": h["val_loss"][e],
                "val_accuracy": h["val_accuracy"][e],
                "lr": settings.lr,
            }
            for e in range(len(h["loss"]))
        ]
        val_proba = predict([model], data.x(va_rows), settings.batch_size)
        test_proba = predict([model], x_test, settings.batch_size)
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(val_proba)}))
        folds.append(fold_row(proto, r, k, va_rows, val_proba, test_proba, best, len(h["loss"])))
        members.append(model)
    spec = {
        "arch": arch,
        "input_shape": [data.shape[2], data.shape[0], data.shape[1]],
        "n_classes": proto.n_classes,
        "classes": proto.classes,
        "dropout": settings.dropout,
        "input": data.source.model_input(
            "image", trainer=stage.stage, layout="channels_last (the stored (n, C, H, W) array transposed)"
        ),
    }

    def save(folder: Path) -> None:
        names = []
        for i, m in enumerate(members):
            m.save(folder / f"member{i}.keras")
            names.append(f"member{i}.keras")
        (folder / "model.json").write_text(
            json.dumps({**spec, "framework": "tensorflow", "members": names}, indent=2) + "\n"
        )

    result = ModelResult(
        name=arch,
        kind="deep",
        framework="tensorflow",
        spec=spec,
        folds=pd.DataFrame(folds),
        cv=cv,
        test_proba=predict(members, x_test, settings.batch_size),
        n_parameters=members[0].count_params(),
        history=pd.DataFrame(history),
        save=save,
    )
    return result, members


def explain(arch: str, members, settings: TrainTfGradcam, data: Images, proto: Protocol, out: Path, markers) -> dict:
    """The configured methods for the fold ensemble on every held-out test sample (its true class), in explain's
    layout: attributions, class maps, gene rankings, the reference's threshold gene picker, marker precision."""
    from . import cams, networks

    ex = settings.explain
    rows = proto.test_rows
    labels, names = proto.labels[rows], proto.samples["sample"].to_numpy()[rows]
    x = data.x(rows)
    proba = predict(members, x, ex.batch_size)
    values = None if data.values is None else np.asarray(data.values[rows])
    layer = networks.target_layer(members[0], ex.layer)
    genes = np.asarray(data.gmap.genes).astype(str)
    entry = {
        "arch": arch,
        "input": "image",
        "gene_map": True,
        "framework": "tensorflow",
        "samples": "all",
        "n_test": int(len(rows)),
        "n_explained": int(len(rows)),
        "methods": {},
        "not_applicable": {},
    }
    for method in ex.methods:
        t0 = time.time()
        folder = out / arch / method
        (folder / "figures").mkdir(parents=True)
        attr = np.concatenate(
            [
                cams.attribute(method, members, x[s : s + ex.batch_size], labels[s : s + ex.batch_size], layer)
                for s in range(0, len(x), ex.batch_size)
            ]
        )
        attr = np.ascontiguousarray(attr.transpose(0, 3, 1, 2), dtype=np.float32)  # (n, C, H, W) as explain's
        np.save(folder / "attributions.npy", attr)
        sample_genes = data.gmap.gene_attributions(attr, values).astype(np.float32)
        np.save(folder / "sample_genes.npy", sample_genes)
        table, ranking, result = write_gene_rankings(
            folder,
            class_means(sample_genes, labels, proto.n_classes),
            proto.classes,
            genes,
            markers,
            ex.top_k,
            ex.precision_k,
        )
        threshold_picker(
            attr, sample_genes, data.gmap, names, labels, proba, proto.classes, genes, ex.threshold, ex.per_sample_top_k
        ).to_csv(folder / "sample_top_genes.csv", index=False)
        class_maps = class_means(attr, labels, proto.n_classes).astype(np.float32)
        np.save(folder / "class_maps.npy", class_maps)
        signed = cams.SIGNED[method]
        plot_class_maps(
            class_maps,
            proto.classes,
            ranking,
            data.genes_table,
            folder / "figures" / "class_maps.png",
            f"{arch} · {method}: class means over held-out test samples (top genes circled)",
            signed=signed,
        )
        plot_top_genes_heatmap(
            table,
            ranking,
            folder / "figures" / "top_genes_heatmap.png",
            f"{arch} · {method}: each class's top {ex.top_k} genes across all classes",
            signed=signed,
        )
        entry["methods"][method] = {
            "top_k": ex.top_k,
            "signed": signed,
            "description": cams.DESCRIPTIONS[method],
            **({"layer": layer} if method != "guided_backprop" else {}),
            **result,
            "seconds": round(time.time() - t0, 2),
        }
        key = f"marker_precision_at_{ex.precision_k}"
        log.info(
            "%s %s: %.1f s%s",
            arch,
            method,
            time.time() - t0,
            f", planted-marker precision@{ex.precision_k} = {result[key]:.3f}" if key in result else "",
        )
    return entry


def threshold_picker(
    attr: np.ndarray,
    sample_genes: np.ndarray,
    gmap: PixelGeneMap,
    names,
    labels,
    proba,
    classes: list[str],
    genes: np.ndarray,
    threshold: float,
    k: int,
) -> pd.DataFrame:
    """The reference's gene picker, per sample: the pixels whose map (channels summed) is at least ``threshold`` x
    the sample's maximum, and the genes on them, ranked by their gene attribution (at most ``k`` per sample)."""
    on_pixel = (gmap.weights > 0).T.tocsr()  # (genes, pixels)
    rows = []
    for i in range(len(attr)):
        plane = attr[i].sum(axis=0).reshape(-1)
        top = plane.max()
        if not np.isfinite(top) or top <= 0:
            continue
        hot = (plane >= threshold * top).astype(np.float32)
        picked = np.flatnonzero(on_pixel @ hot)
        picked = picked[np.argsort(-sample_genes[i, picked], kind="stable")][:k]
        for rank, g in enumerate(picked, start=1):
            rows.append(
                (
                    names[i],
                    classes[labels[i]],
                    classes[int(proba[i].argmax())],
                    genes[g],
                    float(sample_genes[i, g]),
                    rank,
                )
            )
    return pd.DataFrame(rows, columns=["sample", "class", "prediction", "gene", "score", "rank"])


def run(stage: StageRun) -> None:
    import tensorflow as tf

    exp = stage.exp
    settings: TrainTfGradcam = exp.section("train_tf_gradcam")
    data = Images(stage.provider("dataset"))
    markers = check_before_training(settings, data)
    gpus = tf.config.list_physical_devices("GPU")
    stage.device = f"tensorflow {tf.__version__} on " + (f"{len(gpus)} GPU(s)" if gpus else "CPU")
    proto = Protocol(
        data.source.samples,
        data.source.classes,
        settings.folds,
        settings.repeats,
        exp.seed,
        key="train_tf_gradcam.folds",
        small_classes_key=(data.source.info.get("small_classes") or {}).get("key"),
    )
    results, explanations = [], Explanations()
    for arch in settings.models:
        result, members = train(arch, settings, data, proto, stage, exp.seed)
        results.append(result)
        write_result(stage.out, proto, result, settings.conformal_coverage, settings.conformal_by_class)
        if settings.explain.methods:
            explanations.models[arch] = ModelExplanations.from_json(
                explain(arch, members, settings, data, proto, stage.out, markers)
            )
    write_models_index(stage.out, results)
    data.source.copy_map_to(stage.out)
    write_explanations(stage.out, explanations)
    stage.record(
        models={
            r.name: {"arch": r.spec["arch"], "n_parameters": r.n_parameters, "kind": r.kind, "framework": "tensorflow"}
            for r in results
        },
        arguments=settings.model_dump(mode="json"),
    )


if __name__ == "__main__":
    raise SystemExit(main("train_tf_gradcam", run))
