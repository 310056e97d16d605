"""Figures of explain: class-mean maps with their top genes marked."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_class_maps(class_maps: np.ndarray, classes: list[str], ranking: pd.DataFrame, gene_pixels: pd.DataFrame,
                    path: Path, title: str, signed: bool = False, n_marked: int = 5) -> None:
    """class_maps: (n_classes, C, H, W); the top ``n_marked`` genes of each class are circled and named.

    Absolute maps show the channel maximum; signed maps the channel sum on a diverging scale centred on 0.
    """
    n = len(classes)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    where = gene_pixels.set_index("gene")
    for ax, c in zip(axes.ravel(), range(n)):
        if signed:
            img = np.nansum(class_maps[c], axis=0)
            lim = float(np.nanmax(np.abs(img))) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            ax.imshow(np.nanmax(class_maps[c], axis=0), cmap="magma", interpolation="nearest")
        top = ranking.loc[ranking["class"] == classes[c]].sort_values("rank").head(n_marked)
        for gene in top["gene"]:
            r, col = where.loc[gene, ["row", "col"]]
            ax.add_patch(plt.Circle((col, r), 1.2, fill=False, color="lime" if signed else "cyan", lw=1.2))
            ax.annotate(gene, (col, r), xytext=(3, -3), textcoords="offset points", color="lime" if signed else "cyan", fontsize=6)
        ax.set_title(classes[c], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
