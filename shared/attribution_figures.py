"""Figures of attributions (explain, and trainers that explain their own models): class means, top genes across
classes, per-sample maps, deletion curves; for vectors, images and volumes alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def to_plane(class_map: np.ndarray, signed: bool) -> np.ndarray:
    """(C, *spatial) -> one 2-D plane to show: channels summed (signed) or their maximum (absolute); a volume is
    projected along its first spatial axis the same way (sum or maximum)."""
    plane = np.nansum(class_map, axis=0) if signed else np.nanmax(class_map, axis=0)
    while plane.ndim > 2:
        plane = np.nansum(plane, axis=0) if signed else np.nanmax(plane, axis=0)
    return plane


def plot_class_maps(
    class_maps: np.ndarray,
    classes: list[str],
    ranking: pd.DataFrame,
    gene_pixels: pd.DataFrame | None,
    path: Path,
    title: str,
    signed: bool = False,
    n_marked: int = 5,
    feature_names=None,
) -> None:
    """class_maps: (n_classes, features) for vectors, or (n_classes, C, *spatial) for images and volumes.

    Vectors: each class's top genes as bars. Images: the map, with the top ``n_marked`` genes of each class circled
    and named where their pixels are known (``gene_pixels``: gene, row, col). Signed maps use a diverging scale
    centred on 0.
    """
    n = len(classes)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    vector = class_maps.ndim == 2
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    where = gene_pixels.set_index("gene") if gene_pixels is not None and {"row", "col"} <= set(gene_pixels) else None
    colour = "lime" if signed else "cyan"
    for ax, c in zip(axes.ravel(), range(n), strict=False):
        if vector:
            values = class_maps[c]
            order = np.argsort(-np.nan_to_num(values, nan=-np.inf))[:10][::-1]
            names = np.asarray(feature_names)[order] if feature_names is not None else [str(i) for i in order]
            ax.barh(range(len(order)), values[order], color="#c44" if signed else "#446")
            ax.set_yticks(range(len(order)), names, fontsize=6)
            ax.tick_params(axis="x", labelsize=6)
        else:
            img = to_plane(class_maps[c], signed)
            if signed:
                lim = float(np.nanmax(np.abs(img))) or 1.0
                ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                ax.imshow(img, cmap="magma", interpolation="nearest")
            top = ranking.loc[ranking["class"] == classes[c]].sort_values("rank").head(n_marked)
            if where is not None and class_maps.ndim == 4:
                circle_genes(ax, top["gene"].to_numpy(), top["score"].to_numpy(), where, colour)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(classes[c], fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def circle_genes(ax, genes, scores, where: pd.DataFrame, colour: str) -> None:
    """Circle and name ``genes`` at their pixels (``where``: gene -> row, col); radius 0.6-2 pixels by score."""
    scores = np.abs(np.asarray(scores, dtype=float))
    top = float(scores.max()) if len(scores) and scores.max() > 0 else 1.0
    for gene, score in zip(genes, scores, strict=False):
        if gene not in where.index:
            continue
        r, col = where.loc[gene, ["row", "col"]]
        ax.add_patch(plt.Circle((col, r), 0.6 + 1.4 * score / top, fill=False, color=colour, lw=1.1))
        ax.annotate(gene, (col, r), xytext=(3, -3), textcoords="offset points", color=colour, fontsize=6)


def plot_top_genes_heatmap(
    table: pd.DataFrame, ranking: pd.DataFrame, path: Path, title: str, signed: bool = False
) -> None:
    """Each class's top genes (rows, grouped by the class that ranks them) against every class (columns): the
    class-mean attribution, each row divided by its largest absolute value, so a gene specific to its class shows
    as one bright cell (the GTEx reference's figure)."""
    genes = list(
        dict.fromkeys(
            ranking.sort_values(
                ["class", "rank"],
                key=lambda col: col.map({c: i for i, c in enumerate(table.columns)}) if col.name == "class" else col,
            )["gene"]
        )
    )
    if not genes:
        return
    values = table.loc[genes].to_numpy(dtype=float)
    scale = np.nanmax(np.abs(values), axis=1, keepdims=True)
    values = values / np.where(scale > 0, scale, 1.0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * table.shape[1], 1.4 + 0.13 * len(genes)))
    im = ax.imshow(
        values,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu_r" if signed else "magma",
        vmin=-1 if signed else 0,
        vmax=1,
    )
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(genes)), genes, fontsize=max(3, min(7, 400 // len(genes))))
    owner = ranking.drop_duplicates("gene").set_index("gene")["class"]
    edges = [i for i in range(1, len(genes)) if owner[genes[i]] != owner[genes[i - 1]]]
    for e in edges:
        ax.axhline(e - 0.5, color="white" if not signed else "black", lw=0.6)
    fig.colorbar(im, ax=ax, fraction=0.05, label="class mean / row max |.|")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(frozen=True)
class ShownSamples:
    """The samples a figure shows, one row each: the model's inputs and their attribution maps, the sample names and
    their true and predicted classes (the captions), and with genes the attributions per gene (``sample_genes``,
    (n, n_genes); ``gene_names`` names its columns)."""

    inputs: np.ndarray
    attr: np.ndarray
    names: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    sample_genes: np.ndarray | None = None
    gene_names: np.ndarray | None = None


def plot_samples(
    samples: ShownSamples,
    gene_pixels: pd.DataFrame | None,
    path: Path,
    title: str,
    signed: bool = False,
    n_marked: int = 5,
) -> None:
    """A few samples, one row each: the input beside its attribution map, the sample's top ``n_marked`` genes
    circled (radius by score) and named (images with a gene map: ``gene_pixels``: gene, row, col). Vectors: the
    sample's top genes as bars, each with its input value. Volumes: both projected to a plane."""
    inputs, attr, sample_genes, gene_names = samples.inputs, samples.attr, samples.sample_genes, samples.gene_names
    names, labels, predictions = samples.names, samples.labels, samples.predictions
    n = len(inputs)
    vector = inputs.ndim == 2
    where = gene_pixels.set_index("gene") if gene_pixels is not None and {"row", "col"} <= set(gene_pixels) else None
    colour = "lime" if signed else "cyan"
    fig, axes = plt.subplots(n, 1 if vector else 2, figsize=(4.2 if vector else 5.2, 2.3 * n), squeeze=False)
    for i in range(n):
        head = f"{names[i]}: {labels[i]}" + ("" if labels[i] == predictions[i] else f" (predicted {predictions[i]})")
        scores = sample_genes[i] if sample_genes is not None else attr[i].reshape(-1)
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[: n_marked if not vector else 10]
        if vector:
            ax = axes[i, 0]
            shown = order[::-1]
            labels_y = [f"{gene_names[g] if gene_names is not None else g} ({inputs[i][g]:.2g})" for g in shown]
            ax.barh(range(len(shown)), scores[shown], color="#c44" if signed else "#446")
            ax.set_yticks(range(len(shown)), labels_y, fontsize=6)
            ax.tick_params(axis="x", labelsize=6)
            ax.set_title(f"{head} · top genes (input value)", fontsize=7)
            continue
        ax_in, ax_map = axes[i]
        ax_in.imshow(
            to_plane(inputs[i], signed=True) / max(1, inputs[i].shape[0]), cmap="gray", interpolation="nearest"
        )
        ax_in.set_title(f"{head} · input", fontsize=7)
        plane = to_plane(attr[i], signed)
        if signed:
            lim = float(np.nanmax(np.abs(plane))) or 1.0
            ax_map.imshow(plane, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            ax_map.imshow(plane, cmap="magma", interpolation="nearest")
        if where is not None and inputs.ndim == 4 and sample_genes is not None and gene_names is not None:
            circle_genes(ax_map, np.asarray(gene_names)[order], scores[order], where, colour)
        ax_map.set_title("attribution", fontsize=7)
        for ax in (ax_in, ax_map):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.3 * n)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_volume_overlays(entries: list[dict], path: Path, title: str) -> None:
    """Volumes: rows of patients, columns of the three orthogonal planes through the tumour's centre of mass (the
    brain's without a tumour mask): FLAIR in grey, the map (absolute, scaled to its maximum) in colour, the tumour
    mask's outline in white. entries: patient, label, predicted, flair, cam, tumour, brain, share, chance."""
    fig, axes = plt.subplots(len(entries), 3, figsize=(7.5, 2.6 * len(entries)), squeeze=False)
    for row, e in zip(axes, entries, strict=False):
        where = e["tumour"] if e["tumour"].any() else e["brain"]
        centre = [int(round(c)) for c in np.argwhere(where).mean(axis=0)]
        cam = e["cam"] / (e["cam"].max() or 1.0)
        for ax, axis, name in zip(row, range(3), ("sagittal", "coronal", "axial"), strict=False):
            take = [slice(None)] * 3
            take[axis] = centre[axis]
            flair, c, mask = (np.rot90(a[tuple(take)]) for a in (e["flair"], cam, e["tumour"]))
            ax.imshow(flair, cmap="gray")
            ax.imshow(np.ma.masked_less(c, 0.05), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if axis == 0:
                ax.set_ylabel(f"{e['patient']}\ntrue {e['label']}\npred. {e['predicted']}", fontsize=7)
            ax.set_title(
                f"{name}: in mask {e['share']:.2f} (chance {e['chance']:.2f})" if axis == 1 else name, fontsize=7
            )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_faithfulness(result: dict, path: Path, method: str) -> None:
    """Mean deletion and insertion curves of a method beside a random order's."""
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.0))
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=False):
        curve, rand = result[f"{kind}_curve"], result[f"random_{kind}_curve"]
        x = np.linspace(0, 1, len(curve))
        ax.plot(x, curve, color="#c44", lw=1.5, label=f"{method} (AUC {np.trapezoid(curve, x):.3f})")
        ax.plot(x, rand, color="grey", lw=1.2, ls="--", label=f"random order (AUC {np.trapezoid(rand, x):.3f})")
        ax.set_xlabel(f"fraction of input values {'removed' if kind == 'deletion' else 'added'}")
        ax.set_ylabel("true-class probability")
        ax.set_ylim(0, 1.02)
        ax.set_title(kind, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
