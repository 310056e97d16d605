"""The classifier result layout, written the same way by every trainer.

A trainer builds one ``ModelResult`` per model and calls ``write_result``; it writes under ``<stage>/<model>/``:
``metrics.json``, ``folds.csv``, ``per_class.csv``, ``confusion_matrix.csv``, ``confusion_matrix_cv_mean.csv``,
``roc.csv``, ``test_predictions.csv``, ``cv_predictions.csv``, ``test_conformal.csv`` (split-conformal prediction
sets of the held-out test, calibrated on the out-of-fold predictions: ``shared.evaluation.conformal``) and, for a model
trained by epochs, ``history.csv``.
The model files themselves (``model.json`` and weights) are the trainer's, written by its ``save`` callback.
``write_models_index`` then writes the stage's ``models.json``, which is how report and explain find the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.artifacts import write_json_atomic
from shared.logs import get_logger

from .conformal import DEFAULT_COVERAGE, conformal_sets, out_of_fold
from .metrics import classification_metrics, confusion_table, mean_confusion, per_class_table, roc_table
from .models_index import LAYOUTS_INDEX, MODELS_INDEX
from .splits import Protocol

log = get_logger(__name__)


@dataclass
class ModelResult:
    """What training one model produced.

    cv: one frame per fold with columns repeat, fold, row (rows of the protocol's samples), proba
    (n_classes floats each); test_proba: (n_test, n_classes) probabilities of the fold models' mean on the
    held-out test rows.
    """

    name: str
    kind: str  # "deep" | "baseline" | anything a trainer names
    framework: str  # "torch" | "tensorflow" | "sklearn" ...: who can load the model files
    spec: dict[str, Any]
    folds: pd.DataFrame
    cv: list[pd.DataFrame]
    test_proba: np.ndarray
    n_parameters: int | None = None
    history: pd.DataFrame | None = None
    pretrained: bool = False
    save: Callable[[Path], None] | None = field(default=None, repr=False)  # writes the model files into a folder


def fold_row(
    proto: Protocol,
    r: int,
    k: int,
    va_rows: np.ndarray,
    val_proba: np.ndarray,
    test_proba: np.ndarray,
    best_epoch: int | None = None,
    epochs_run: int | None = None,
) -> dict:
    """One row of ``folds.csv``: the fold model's validation and held-out test metrics."""
    fold_val = classification_metrics(proto.labels[va_rows], val_proba, proto.classes)
    fold_test = classification_metrics(proto.labels[proto.test_rows], test_proba, proto.classes)
    return {
        "repeat": r,
        "fold": k,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        **{f"val_{key}": v for key, v in fold_val.items()},
        **{f"test_{key}": v for key, v in fold_test.items()},
    }


def predictions(proto: Protocol, rows: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    classes = np.asarray(proto.classes)
    frame = pd.DataFrame(
        {
            "sample": proto.samples["sample"].to_numpy()[rows],
            "label": classes[proto.labels[rows]],
            "predicted": classes[proba.argmax(1)],
        }
    )
    for c, name in enumerate(proto.classes):
        frame[f"p_{name}"] = proba[:, c]
    return frame


def conformal(
    proto: Protocol, result: ModelResult, coverage: float = DEFAULT_COVERAGE, by_class: bool = False
) -> tuple[dict, pd.DataFrame]:
    """Split-conformal prediction sets of the held-out test samples at ``coverage``, calibrated on the model's
    out-of-fold predictions (a row's repeats averaged): (figures for ``metrics.json``, ``test_conformal.csv``)."""
    rows, cal_proba = out_of_fold(result.cv)
    return conformal_sets(
        cal_proba,
        proto.labels[rows],
        result.test_proba,
        proto.labels[proto.test_rows],
        proto.samples["sample"].astype(str).to_numpy()[proto.test_rows],
        proto.classes,
        coverage,
        by_class,
        seed=proto.seed,
    )


def write_result(
    out: Path,
    proto: Protocol,
    result: ModelResult,
    conformal_coverage: float = DEFAULT_COVERAGE,
    conformal_by_class: bool = False,
) -> dict:
    """Every output of one model under ``out/<name>/``; returns its ``metrics.json`` content. ``conformal_coverage``
    and ``conformal_by_class``: the trainer's settings of the conformal prediction sets."""
    folder = out / result.name
    folder.mkdir(parents=True, exist_ok=True)
    classes, labels = proto.classes, proto.labels
    y_test = labels[proto.test_rows]
    test = classification_metrics(y_test, result.test_proba, classes)
    cv_frame = pd.concat(result.cv, ignore_index=True)
    cv_tables = [
        confusion_table(labels[g["row"].to_numpy()], np.stack(g["proba"]), classes)
        for _, g in cv_frame.groupby(["repeat", "fold"])
    ]
    first = cv_frame[cv_frame["repeat"] == 0]
    cv_metrics = classification_metrics(labels[first["row"].to_numpy()], np.stack(first["proba"]), classes)
    if result.save is not None:
        result.save(folder)
    if result.history is not None:
        result.history.to_csv(folder / "history.csv", index=False)
    result.folds.to_csv(folder / "folds.csv", index=False)
    per_class_table(y_test, result.test_proba, classes).to_csv(folder / "per_class.csv", index=False)
    confusion_table(y_test, result.test_proba, classes).to_csv(folder / "confusion_matrix.csv")
    mean_confusion(cv_tables).to_csv(folder / "confusion_matrix_cv_mean.csv")
    roc_table(y_test, result.test_proba, classes).to_csv(folder / "roc.csv", index=False)
    predictions(proto, proto.test_rows, result.test_proba).to_csv(folder / "test_predictions.csv", index=False)
    cv_pred = predictions(proto, cv_frame["row"].to_numpy(), np.stack(cv_frame["proba"]))
    cv_pred.insert(0, "fold", cv_frame["fold"].to_numpy())
    cv_pred.insert(0, "repeat", cv_frame["repeat"].to_numpy())
    cv_pred.to_csv(folder / "cv_predictions.csv", index=False)
    conformal_figures, conformal_table = conformal(proto, result, conformal_coverage, conformal_by_class)
    conformal_table.to_csv(folder / "test_conformal.csv", index=False)
    protocol = proto.describe()
    metrics = {
        "model": result.name,
        "kind": result.kind,
        "framework": result.framework,
        "protocol": protocol["text"],
        "splits": protocol,
        "classes": list(classes),
        "test": test,
        "cv": cv_metrics,
        "folds": result.folds.to_dict(orient="records"),
        "n_parameters": result.n_parameters,
        "pretrained": result.pretrained,
        "conformal": conformal_figures,
    }
    write_json_atomic(folder / "metrics.json", metrics)
    log.info(
        "%s: held-out test (%d samples) accuracy %.3f, macro-F1 %.3f, macro AUC %.3f; conformal sets at %.0f%%: "
        "coverage %.3f, mean size %.2f",
        result.name,
        test["n"],
        test["accuracy"],
        test["macro_f1"],
        test["macro_auc"],
        100 * conformal_coverage,
        conformal_figures["coverage"],
        conformal_figures["mean_set_size"],
    )
    return metrics


def write_models_index(out: Path, results: list[ModelResult]) -> None:
    """``models.json``: one entry per model (name, kind, framework, folder, input) -- the classifier role's index."""
    write_json_atomic(
        out / MODELS_INDEX,
        [
            {
                "name": r.name,
                "kind": r.kind,
                "framework": r.framework,
                "folder": r.name,
                "input": r.spec.get("input", {}),
            }
            for r in results
        ],
    )


def write_layouts_index(out: Path, entries: list[dict]) -> None:
    """``layouts.json``: the layout-sensitivity check's models (one member of a model trained on another layout of
    the genes), apart from models.json so that the main models' tables and comparisons are unchanged; each entry as
    models.json's (name, kind, framework, folder, input) plus the model it varies, the layout and its held-out test
    metrics."""
    write_json_atomic(out / LAYOUTS_INDEX, entries)
