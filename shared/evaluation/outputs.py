"""The files of the classifier result layout (``results.write_result``), declared once for every trainer's
``StageSpec.outputs``."""

from __future__ import annotations

from shared.config import Output

CLASSIFIER_OUTPUTS = (
    Output(
        "{model}/metrics.json",
        "held-out test metrics, out-of-fold CV metrics, per-fold metrics, the protocol and its splits fingerprint",
    ),
    Output("{model}/folds.csv", "per fold: best epoch, validation and held-out test metrics"),
    Output("{model}/per_class.csv", "precision, recall, F1, ROC-AUC and support per class (held-out test)"),
    Output("{model}/confusion_matrix.csv", "held-out test confusion matrix (true x predicted counts)"),
    Output("{model}/confusion_matrix_cv_mean.csv", "validation confusion matrices, row-normalised, mean over folds"),
    Output("{model}/roc.csv", "one-vs-rest ROC curves: class, fpr, tpr, threshold (held-out test)"),
    Output("{model}/test_predictions.csv", "sample, label, predicted, p_<class> on the held-out test split"),
    Output("{model}/cv_predictions.csv", "repeat, fold, sample, label, predicted, p_<class> out of fold"),
    Output(
        "{model}/test_conformal.csv",
        "split-conformal prediction sets of the held-out test (calibrated out of fold): sample, label, predicted, "
        "set (classes joined by |), set_size, covered",
    ),
    Output(
        "{model}/history.csv",
        "fold, epoch, train/validation loss and accuracy, learning rate",
        when="models trained by epochs",
    ),
)
