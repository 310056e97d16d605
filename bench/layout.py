"""Layout fit at real gene counts: our default t-SNE layout beside pyDeepInsight's, in one run.

``python -m bench.layout [--genes 2000,10000,20000] [--samples 2000] [--size 128] [--discretization bin]``

Both sides get the same matrix (``bench.compare.realistic_matrix``: synthetic counts normalised as the stage
does, top-variance genes, min-max scaled) and fit a t-SNE layout of the genes onto the same image:

- ours: ``fit_deepinsight`` with ``embedding: tsne``, the stage's default (PCA to 50 components, then openTSNE's
  t-SNE: Annoy neighbours, FFT-interpolated repulsion from 10,000 genes up, cosine, PCA initialisation);
- theirs: pyDeepInsight's ``ImageTransformer(feature_extractor, discretization, pixels).fit`` with
  scikit-learn's Barnes-Hut t-SNE behind the same PCA (``bench.compare.pdi_extractor('tsne_sklearn')``: cosine,
  init='pca', perplexity 30), i.e. what our ``embedding: tsne_sklearn`` computes.

The layout quality is measured the same way on both: the trustworthiness of the 2-D gene coordinates with
respect to the genes' training profiles (``sklearn.manifold.trustworthiness``, cosine, ``--neighbours`` 5; on a
seeded subsample of at most ``--trust-points`` genes, the same genes for both, when there are more) and the share
of genes alone on their pixel. Each fit runs once (ours first at one size, theirs first at the next, so that a
burst of load does not always hit the same side); speedup = their time / ours. The headline keys are those at
10,000 genes: ``fit_speedup_vs_pydeepinsight``, ``trustworthiness_difference`` (ours - theirs) and
``unique_pixel_share_difference``. Written to ``outputs/bench/layout.json``.
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from pathlib import Path

import numpy as np

from shared.artifacts import write_json_atomic

from .compare import Recording, _embedding_hook, pdi_extractor, realistic_matrix
from .figures import count, faster, row
from .pdi import load_image_transformer

DEFAULT_OUT = Path("outputs/bench/layout.json")
HEADLINE_GENES = 10_000
WHAT = (
    "The layout fit at real gene counts (2,000 samples; 128 x 128, bin), ours with the default embedding (openTSNE: "
    "Barnes-Hut below 10,000 genes, FFT-accelerated from there), and its quality: trustworthiness of the gene "
    "coordinates (cosine, 5 neighbours) and the share of genes alone on a pixel."
)
REFERENCE = "pyDeepInsight fitting scikit-learn's Barnes-Hut t-SNE behind the same 50-component PCA"


def trust(profiles: np.ndarray, coords: np.ndarray, neighbours: int, rows: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(profiles[rows], np.asarray(coords)[rows], n_neighbors=neighbours, metric="cosine"))


def unique_share(pixel_of_gene: np.ndarray) -> float:
    """Share of genes that are alone on their pixel."""
    _, inverse, counts = np.unique(pixel_of_gene, return_inverse=True, return_counts=True)
    return float((counts[inverse] == 1).mean())


def ours(X, genes, size, discretization, seed) -> dict:
    from stages.preprocess.transforms.deepinsight import fit_deepinsight

    gc.collect()
    with _embedding_hook() as seen:
        t0 = time.perf_counter()
        gmap, _ = fit_deepinsight(X, genes, size, size, "tsne", discretization, seed)
        seconds = time.perf_counter() - t0
    pixel = np.asarray(gmap.weights.tocsc().argmax(axis=0)).ravel()  # one pixel per gene (single channel)
    return {"seconds": seconds, "coords": seen["coords"], "pixel": pixel}


def theirs(ImageTransformer, X, size, discretization, seed) -> dict:
    extractor = Recording(pdi_extractor("tsne_sklearn", seed, X.shape[1], X.shape[0]))
    it = ImageTransformer(feature_extractor=extractor, discretization=discretization, pixels=(size, size))
    gc.collect()
    t0 = time.perf_counter()
    it.fit(X)
    seconds = time.perf_counter() - t0
    pixel = np.asarray(it._coords)[:, 0] * size + np.asarray(it._coords)[:, 1]
    return {"seconds": seconds, "coords": extractor.last, "pixel": pixel}


def run_layout(
    gene_counts=(2000, 10_000, 20_000),
    n_samples: int = 2000,
    size: int = 128,
    discretization: str = "bin",
    neighbours: int = 5,
    trust_points: int = 10_000,
    seed: int = 0,
) -> dict:
    ImageTransformer, pdi_info = load_image_transformer()
    sizes = {}
    for i, n_genes in enumerate(gene_counts):
        X, genes = realistic_matrix(n_samples, n_genes, seed=seed)
        runs = {}
        order = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
        for side in order:
            runs[side] = (
                ours(X, genes, size, discretization, seed)
                if side == "ours"
                else theirs(ImageTransformer, X, size, discretization, seed)
            )
            print(f"{n_genes} genes: {side} {runs[side]['seconds']:.1f} s", flush=True)
        profiles = np.ascontiguousarray(X.T)
        rows = np.arange(n_genes)
        if n_genes > trust_points:
            rows = np.sort(np.random.default_rng(seed).choice(n_genes, size=trust_points, replace=False))
        entry = {"samples": n_samples, "genes": n_genes, "trust_points": int(len(rows))}
        for side, run in runs.items():
            entry[side] = {
                "fit_seconds": round(run["seconds"], 2),
                "trustworthiness": round(trust(profiles, run["coords"], neighbours, rows), 4),
                "unique_pixel_share": round(unique_share(run["pixel"]), 4),
            }
        entry["fit_speedup_vs_pydeepinsight"] = round(runs["theirs"]["seconds"] / runs["ours"]["seconds"], 2)
        entry["trustworthiness_difference"] = round(
            entry["ours"]["trustworthiness"] - entry["theirs"]["trustworthiness"], 4
        )
        entry["unique_pixel_share_difference"] = round(
            entry["ours"]["unique_pixel_share"] - entry["theirs"]["unique_pixel_share"], 4
        )
        sizes[str(n_genes)] = entry
        del X, profiles, runs
        gc.collect()
    doc = {
        "what": "layout fit (t-SNE of the genes) at several gene counts: ours (openTSNE) vs pyDeepInsight "
        "(scikit-learn Barnes-Hut t-SNE)",
        "pydeepinsight": pdi_info,
        "image": [size, size],
        "discretization": discretization,
        "trust_neighbours": neighbours,
        "sizes": sizes,
    }
    head = sizes.get(str(HEADLINE_GENES))
    if head is not None:
        for key in ("fit_speedup_vs_pydeepinsight", "trustworthiness_difference", "unique_pixel_share_difference"):
            doc[key] = head[key]
        doc["quality_bar_met"] = bool(
            head["trustworthiness_difference"] >= -0.01 and head["unique_pixel_share_difference"] >= 0
        )
    return doc


def headline(doc: dict) -> list[dict]:
    """The Benchmarks page's rows: at each gene count (the headline 10,000 first) the fit's seconds, the
    trustworthiness and the share of genes alone on a pixel, ours beside pyDeepInsight's; the quality bar (ours at
    most 0.01 less trustworthy, at least as many genes alone) at the headline count."""
    rows = []
    sizes = sorted(doc["sizes"].items(), key=lambda kv: (int(kv[0]) != HEADLINE_GENES, int(kv[0])))
    for genes, e in sizes:
        n, head = count(genes), int(genes) == HEADLINE_GENES
        note = "; Barnes-Hut on both sides" if int(genes) < HEADLINE_GENES else ""
        rows.append(
            row(
                f"fit at {n} genes (s{note})",
                e["ours"]["fit_seconds"],
                e["theirs"]["fit_seconds"],
                faster(e["fit_speedup_vs_pydeepinsight"]),
            )
        )
        sub = f" (on {count(e['trust_points'])} genes drawn at random)" if e["trust_points"] < int(genes) else ""
        rows.append(
            row(
                f"trustworthiness at {n} genes{sub}",
                e["ours"]["trustworthiness"],
                e["theirs"]["trustworthiness"],
                f"{e['trustworthiness_difference']:+.4f}",
                "> -0.01" if head else None,
            )
        )
        rows.append(
            row(
                f"genes alone on a pixel at {n} genes",
                f"{e['ours']['unique_pixel_share'] * 100:.1f}%",
                f"{e['theirs']['unique_pixel_share'] * 100:.1f}%",
                f"{e['unique_pixel_share_difference'] * 100:+.1f} points",
                "≥ 0" if head else None,
            )
        )
    return rows


def table(doc: dict) -> str:
    lines = ["genes   ours s  theirs s  speedup  trust ours/theirs  unique-pixel share ours/theirs"]
    for n, e in doc["sizes"].items():
        lines.append(
            f"{n:>6} {e['ours']['fit_seconds']:>8.1f} {e['theirs']['fit_seconds']:>9.1f} "
            f"{e['fit_speedup_vs_pydeepinsight']:>7.2f}x  {e['ours']['trustworthiness']:.4f}/"
            f"{e['theirs']['trustworthiness']:.4f}      {e['ours']['unique_pixel_share']:.4f}/"
            f"{e['theirs']['unique_pixel_share']:.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", default="2000,10000,20000", help="comma-separated gene counts")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="image height = width")
    parser.add_argument("--discretization", default="bin", choices=("bin", "qtb", "lsa"))
    parser.add_argument("--neighbours", type=int, default=5, help="trustworthiness neighbourhood size")
    parser.add_argument("--trust-points", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    doc = run_layout(
        tuple(int(g) for g in args.genes.split(",")),
        args.samples,
        args.size,
        args.discretization,
        args.neighbours,
        args.trust_points,
        args.seed,
    )
    write_json_atomic(args.out, doc)
    print(table(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
