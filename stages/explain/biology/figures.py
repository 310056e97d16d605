"""The biology checks' figures: the DE-overlap heat map and the keep/remove curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_de_overlap(tables: dict[str, pd.DataFrame], k: int, path: Path, title: str) -> None:
    """Heat map: rankings (rows) x classes (columns), overlap of the top-k with the Wilcoxon DE top-k; a cell whose
    overlap is no better than chance (permutation p >= 0.05) is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tables)
    classes = list(dict.fromkeys(c for t in tables.values() for c in t["class"]))
    grid = np.full((len(names), len(classes)), np.nan)
    chance = np.zeros_like(grid, dtype=bool)
    for i, n in enumerate(names):
        t = tables[n]
        t = t[(t["de_method"] == "wilcoxon") & (t["k"] == k)].set_index("class")
        for j, c in enumerate(classes):
            if c in t.index:
                grid[i, j], chance[i, j] = t.at[c, "overlap"] / k, not t.at[c, "better_than_chance"]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(classes), 0.9 + 0.42 * len(names)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(names)):
        for j in range(len(classes)):
            if np.isfinite(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}" + ("*" if chance[i, j] else ""),
                    ha="center",
                    va="center",
                    color="white" if grid[i, j] < 0.6 else "black",
                    fontsize=8,
                )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, fraction=0.04, label=f"share of the top {k} also in the DE top {k}")
    ax.set_title(title + "\n(* no better than random gene sets, permutation p >= 0.05)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_keep_remove(tables: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """Held-out macro-F1 against k: each ranking's kept genes (solid) and remaining genes (dashed), beside random
    genes (grey band: mean +- sd), the DE top-k genes (black) and all genes (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2), sharey=True)
    first, ref = next(iter(tables.items()))
    for ax, mode in zip(axes, ("keep", "remove"), strict=False):
        k = ref["k"].to_numpy()
        mean, sd = ref[f"random_{mode}_f1"].to_numpy(), ref[f"random_{mode}_sd"].to_numpy()
        # each method keeps its own number of genes at a k (the union of the classes' top-k); the band is drawn for
        # the first method's, and every flag compares a method with random sets of its own size (retraining.csv)
        ax.fill_between(k, mean - sd, mean + sd, color="0.8", label=f"random genes, as many as {first}'s (mean +- sd)")
        ax.plot(k, mean, color="0.5", lw=1)
        ax.plot(k, ref[f"de_{mode}_f1"], color="black", lw=2, marker="s", label="DE top-k (Wilcoxon)")
        ax.axhline(ref["all_genes_f1"].iat[0], color="black", ls=":", lw=1, label="all genes")
        for name, t in tables.items():
            ax.plot(t["k"], t[f"{mode}_f1"], marker="o", lw=1.3, ls="-" if mode == "keep" else "--", label=name)
        ax.set_xscale("log")
        ax.set_xticks(k, [str(v) for v in k])
        ax.set_xlabel("k (union of the classes' top-k genes)")
        ax.set_title(
            ("trained on the top genes only (keep)" if mode == "keep" else "trained without them (remove)"), fontsize=9
        )
    axes[0].set_ylabel("held-out macro-F1")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
