"""Figures of explain: class means of attributions, for vectors, images and volumes alike."""
from __future__ import annotations

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


def plot_class_maps(class_maps: np.ndarray, classes: list[str], ranking: pd.DataFrame,
                    gene_pixels: pd.DataFrame | None, path: Path, title: str, signed: bool = False,
                    n_marked: int = 5, feature_names=None) -> None:
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
    for ax, c in zip(axes.ravel(), range(n)):
        if vector:
            values = class_maps[c]
            order = np.argsort(-np.nan_to_num(values, nan=-np.inf))[:10][::-1]
            names = (np.asarray(feature_names)[order] if feature_names is not None else [str(i) for i in order])
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
            for gene in top["gene"] if where is not None and class_maps.ndim == 4 else []:
                if gene not in where.index:
                    continue
                r, col = where.loc[gene, ["row", "col"]]
                ax.add_patch(plt.Circle((col, r), 1.2, fill=False, color=colour, lw=1.2))
                ax.annotate(gene, (col, r), xytext=(3, -3), textcoords="offset points", color=colour, fontsize=6)
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


def plot_faithfulness(result: dict, path: Path, method: str) -> None:
    """Mean deletion and insertion curves of a method beside a random order's."""
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.0))
    for ax, kind in zip(axes, ("deletion", "insertion")):
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
