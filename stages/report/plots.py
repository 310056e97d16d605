"""The report's own figures: confusion matrix and training curves."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_confusion(cm: pd.DataFrame, path: Path, title: str) -> None:
    values = cm.to_numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(cm), 1.0 + 0.6 * len(cm)))
    ax.imshow(values, cmap="Blues")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(len(cm.columns)), cm.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cm.index)), cm.index, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("\n".join(textwrap.wrap(title, 34)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: pd.DataFrame, path: Path, title: str) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for fold, h in history.groupby("fold"):
        (line,) = ax_loss.plot(h["epoch"], h["train_loss"], lw=1, label=f"fold {fold} train")
        ax_loss.plot(h["epoch"], h["val_loss"], lw=1, ls="--", color=line.get_color(), label=f"fold {fold} val")
        ax_acc.plot(h["epoch"], h["val_accuracy"], lw=1, color=line.get_color(), label=f"fold {fold}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_yscale("log")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    ax_loss.legend(fontsize=6, ncol=2)
    ax_acc.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(roc: pd.DataFrame, path: Path, title: str) -> None:
    """One-vs-rest ROC curves of every class (held-out test)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for cls, g in roc.groupby("class", sort=False):
        ax.plot(g["fpr"], g["tpr"], lw=1.2, label=str(cls))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("\n".join(textwrap.wrap(title, 34)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mean_confusion(cm: pd.DataFrame, path: Path, title: str) -> None:
    """Row-normalised confusion averaged over folds (fractions of each true class)."""
    values = cm.to_numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(cm), 1.0 + 0.6 * len(cm)))
    ax.imshow(values, cmap="Greens", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.5 else "black", fontsize=7)
    ax.set_xticks(range(len(cm.columns)), cm.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cm.index)), cm.index, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("\n".join(textwrap.wrap(title, 34)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
