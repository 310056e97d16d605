"""Classification metrics (scikit-learn) in the shape the report reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1, macro one-vs-rest ROC-AUC over the classes present."""
    labels = np.arange(len(classes))
    y_pred = proba.argmax(1)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    present = np.unique(y_true)
    if len(present) < 2:
        auc = float("nan")
    else:
        # one-vs-rest AUC per class present in y_true, averaged (sklearn needs every class present otherwise)
        auc = float(np.mean([roc_auc_score(y_true == c, proba[:, c]) for c in present]))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f),
        "macro_auc": float(auc),
        "n": int(len(y_true)),
    }


def per_class_table(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    labels = np.arange(len(classes))
    p, r, f, s = precision_recall_fscore_support(y_true, proba.argmax(1), labels=labels, zero_division=0)
    auc = [roc_auc_score(y_true == c, proba[:, c]) if 0 < (y_true == c).sum() < len(y_true) else np.nan for c in labels]
    return pd.DataFrame({"class": classes, "precision": p, "recall": r, "f1": f, "auc": auc, "support": s})


def confusion_table(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    cm = confusion_matrix(y_true, proba.argmax(1), labels=np.arange(len(classes)))
    return pd.DataFrame(cm, index=pd.Index(classes, name="true"), columns=classes)


def mean_confusion(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Confusion matrices of the folds, row-normalised, averaged over folds."""
    norm = [t.div(t.sum(axis=1).replace(0, np.nan), axis=0) for t in tables]
    return sum(n.fillna(0) for n in norm) / len(norm)


def roc_table(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One-vs-rest ROC curves: class, fpr, tpr, threshold."""
    frames = []
    for c, name in enumerate(classes):
        if 0 < (y_true == c).sum() < len(y_true):
            fpr, tpr, thr = roc_curve(y_true == c, proba[:, c])
            frames.append(pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr, "threshold": thr}))
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["class", "fpr", "tpr", "threshold"])
    )
