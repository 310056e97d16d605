"""python -m bench.preprocess {compare,million,all}: the preprocess benchmark (``make bench``).

``compare``  our deepinsight fit and transform beside pyDeepInsight's ImageTransformer on the same matrix,
             embedding and image size (bench/compare.py): speedups and placement agreement
``million``  the real preprocess stage on 100k, 300k and 1M synthetic cells from backed .h5ad files
             (bench/million.py): wall time, peak RSS, seconds per cell
``all``      both

Each writes its part into ``outputs/bench/preprocess.json`` (``--out``), keeping the other part when it is
there, and prints a short table. The file always holds the four headline keys
``transform_speedup_vs_pydeepinsight``, ``fit_speedup_vs_pydeepinsight``, ``million_cells_seconds`` and
``million_cells_peak_rss_gb`` (null where not measured), then the details and the machine. Not a test: no
figure here fails anything; the targets (transform >= 10x, fit >= 1x, 1M cells under 4 GB) are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from importlib import metadata
from pathlib import Path

from shared.artifacts import write_json_atomic

from .figures import count, faster, row

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "outputs" / "bench" / "preprocess.json"
HEADLINE = (
    "transform_speedup_vs_pydeepinsight",
    "fit_speedup_vs_pydeepinsight",
    "million_cells_seconds",
    "million_cells_peak_rss_gb",
)
TARGETS = {
    "transform_speedup_vs_pydeepinsight": ">= 10",
    "fit_speedup_vs_pydeepinsight": ">= 1",
    "million_cells_peak_rss_gb": "< 4",
}

WHAT = (
    "DeepInsight fit and transform on the same matrix (4,000 samples x 2,000 genes, same embedding, 64 x 64 images), "
    "ours beside pyDeepInsight's; and the preprocess stage itself on 100,000 to 1,000,000 cells read from backed "
    ".h5ad files, each size in a fresh process (wall time, peak RSS)."
)
REFERENCE = "pyDeepInsight's ImageTransformer (fit and transform) on the same matrix, embedding and image size"
COMMAND = "python -m bench.preprocess all"


def machine() -> dict:
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": mem_gb,
        "loadavg_at_write": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for dist in (
        "numpy",
        "scipy",
        "scikit-learn",
        "anndata",
        "scanpy",
        "h5py",
        "torch",
        "pyDeepInsight",
        "opencv-python-headless",
        "grad-cam",
        "torchcam",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_results(out: Path, compare: dict | None = None, million: dict | None = None) -> dict:
    """Merge the new part(s) into ``out`` (keeping a part not re-run) and rewrite the headline keys."""
    out = Path(out)
    old = json.loads(out.read_text()) if out.is_file() else {}
    compare = compare if compare is not None else old.get("compare")
    million = million if million is not None else old.get("million")
    doc = {key: None for key in HEADLINE}
    if compare:
        doc["transform_speedup_vs_pydeepinsight"] = round(compare["transform_speedup_vs_pydeepinsight"], 2)
        doc["fit_speedup_vs_pydeepinsight"] = round(compare["fit_speedup_vs_pydeepinsight"], 3)
    if million:
        doc["million_cells_seconds"] = million.get("million_cells_seconds")
        doc["million_cells_peak_rss_gb"] = million.get("million_cells_peak_rss_gb")
    doc["targets"] = TARGETS
    doc["compare"] = compare
    doc["million"] = million
    doc["machine"] = machine()
    doc["versions"] = versions()
    doc["written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(out, doc)
    return doc


def table(doc: dict) -> str:
    lines = []
    c, m = doc.get("compare"), doc.get("million")
    if c:
        h, w = c["image"]
        lines.append(
            f"deepinsight vs pyDeepInsight: {c['matrix']['n_samples']} samples x {c['matrix']['n_genes']} "
            f"genes, {h}x{w}, best of {c['repeats']}"
        )
        lines.append(f"  {'what':28s} {'ours':>10s} {'pyDeepInsight':>14s} {'speedup':>8s}")
        for key, v in c["fit"].items():
            lines.append(f"  {'fit ' + key:28s} {v['ours_s']:9.3f}s {v['pydeepinsight_s']:13.3f}s {v['speedup']:7.2f}x")
        for key, v in c["fit_layout_only"].items():
            lines.append(
                f"  {'fit layout only ' + key:28s} {v['ours_s']:9.3f}s {v['pydeepinsight_s']:13.3f}s "
                f"{v['speedup']:7.2f}x"
            )
        for key, v in c["transform"].items():
            lines.append(
                f"  {'transform ' + key + ' (' + str(v['rows']) + ' rows)':28s} {v['ours_s'] * 1e3:8.2f}ms "
                f"{v['pydeepinsight_s'] * 1e3:12.2f}ms {v['speedup']:7.2f}x"
            )
            for other in ("float32", "sparse_product_then_uint8"):
                if other in v:
                    lines.append(
                        f"  {'  ' + other:28s} {v[other]['s'] * 1e3:8.2f}ms {'':13s} {v[other]['speedup']:7.2f}x"
                    )
            for rows, r in v.get("by_rows", {}).items():
                lines.append(
                    f"  {'transform ' + key + ' (' + str(rows) + ' rows)':28s} {r['ours_s'] * 1e3:8.2f}ms "
                    f"{r['pydeepinsight_s'] * 1e3:12.2f}ms {r['speedup']:7.2f}x"
                )
        lines.append(f"  {'same pixel (of genes)':28s} {'end-to-end':>10s} {'same rotation':>14s} {'same grid':>10s}")
        for key, v in c["placement"].items():
            lines.append(f"  {key:28s} {v['end_to_end']:10.3f} {v['same_rotation']:14.3f} {v['same_convention']:10.3f}")
    if m:
        lines.append(
            f"preprocess stage, deepinsight {m['image'][0]}x{m['image'][1]}, {m['n_genes']} genes "
            f"({m['embedding']}/{m['discretization']}), backed .h5ad"
        )
        lines.append(
            f"  {'cells':>10s} {'seconds':>9s} {'us/cell':>8s} {'peak RSS GB':>12s} {'rc':>3s}   "
            f"phases (s): pass 1 / layout fit / pass 2 + writes"
        )
        for r in m["sizes"]:
            ph = r.get("phases_s") or {}
            lines.append(
                f"  {r['n_cells']:10d} {r['seconds']:9.1f} {r['seconds_per_cell'] * 1e6:8.1f} "
                f"{r['peak_rss_gb']:12.2f} {r['returncode']:3d}   {ph.get('pass1_statistics')} / "
                f"{ph.get('layout_fit')} / {ph.get('pass2_images_and_writes')}"
            )
        if "passes_over_cells" in m:
            lines.append(
                "  the two passes over the cells (no layout fit): "
                + ", ".join(
                    f"{k} cells {v:.0f} us/cell" for k, v in m["passes_over_cells"]["microseconds_per_cell"].items()
                )
            )
        if "linear_fit" in m:
            f = m["linear_fit"]
            lines.append(
                f"  linear fit: {f['fixed_seconds']:.1f} s + {f['seconds_per_million_cells']:.1f} s per "
                f"million cells (max residual {f['max_relative_residual'] * 100:.1f}%)"
            )
    lines.append("headline: " + ", ".join(f"{k} = {doc[k]}" for k in HEADLINE))
    return "\n".join(lines)


def headline(doc: dict) -> list[dict]:
    """The Benchmarks page's rows: the transform per discretisation (ms on the whole matrix) and over batch sizes,
    to float32 images, each fit; then the million cells through the stage and the time's straight-line fit."""
    rows = []
    c, m = doc.get("compare"), doc.get("million")
    if c:
        for disc, t in c["transform"].items():
            rows.append(
                row(
                    f"transform, discretization {disc}, {count(t['rows'])} rows (ms)",
                    round(t["ours_s"] * 1e3, 1),
                    round(t["pydeepinsight_s"] * 1e3, 1),
                    faster(t["speedup"]),
                    "≥ 10x" if disc == min(c["transform"], key=lambda d: c["transform"][d]["speedup"]) else None,
                )
            )
        by_rows = [(int(n), r["speedup"]) for t in c["transform"].values() for n, r in t.get("by_rows", {}).items()]
        if by_rows:
            sizes = sorted({n for n, _ in by_rows})
            low, high = min(s for _, s in by_rows), max(s for _, s in by_rows)
            rows.append(
                row(
                    f"transform, {' and '.join(count(n) for n in sizes)} rows",
                    ratio=f"{low:.0f}x to {high:.0f}x faster",
                )
            )
        floats = [(disc, t["float32"]["speedup"]) for disc, t in c["transform"].items() if "float32" in t]
        if floats:
            rows.append(
                row(
                    "transform to float32 images instead of uint8",
                    ratio=", ".join(f"{s:.1f}x faster ({disc})" for disc, s in floats),
                )
            )
        for key, f in c["fit"].items():
            rows.append(
                row(
                    f"fit, embedding/discretization {key} (s)",
                    round(f["ours_s"], 2),
                    round(f["pydeepinsight_s"], 2),
                    f"{f['speedup']:.2f}x",
                )
            )
        if c["fit"]:
            worst = min(f["speedup"] for f in c["fit"].values())
            rows.append(row("fit, the worst configuration", ratio=f"{worst:.2f}x", bar="≥ 1x"))
    if m:
        largest = m.get("largest_run") or next(
            (r for r in m["sizes"] if r["n_cells"] == 1_000_000 and r["returncode"] == 0), None
        )
        if largest:
            h, w = m["image"]
            rows.append(
                row(
                    f"{count(largest['n_cells'])} cells x {count(m['n_genes'])} genes through the stage (backed "
                    f".h5ad, {m['embedding']}/{m['discretization']}, {h} x {w})",
                    f"{largest['seconds']:.1f} s, peak RSS {largest['peak_rss_gb']:.2f} GB",
                    bar="< 4 GB",
                )
            )
        if "linear_fit" in m:
            f = m["linear_fit"]
            cells = ", ".join(count(r["n_cells"]) for r in m["sizes"] if r["returncode"] == 0)
            rows.append(
                row(
                    f"time by cells ({cells})",
                    f"{f['fixed_seconds']:.1f} s fixed + {f['seconds_per_million_cells']:.1f} s per million cells "
                    f"(largest residual {f['max_relative_residual'] * 100:.1f}%)",
                )
            )
    return rows


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(float(s)) for s in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write (default %(default)s)")
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("compare", "all"):
        p = sub.add_parser(name)
        p.add_argument("--samples", type=int, default=4000)
        p.add_argument("--genes", type=int, default=2000)
        p.add_argument("--size", type=int, default=64, help="image height = width (pyDeepInsight's lsa is square-only)")
        p.add_argument(
            "--embeddings",
            default="pca,tsne_sklearn",
            help="comma-separated: pca, tsne_sklearn, kpca (those pyDeepInsight can be configured to match)",
        )
        p.add_argument("--discretizations", default="bin,lsa")
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--transform-rows", default="512,8192", help="extra batch sizes for the transform timing")
    for name in ("million", "all"):
        p = sub.choices[name] if name in sub.choices else sub.add_parser(name)
        p.add_argument(
            "--cells",
            type=_sizes,
            default=None,
            help="largest size (default 1000000); the run also does 100k and 300k below it",
        )
        p.add_argument("--sizes", type=_sizes, default=None, help="exact comma-separated sizes, e.g. 100000,300000")
        p.add_argument("--chunk-size", type=int, default=None, help="preprocess.chunk_size (default: the stage's)")
        p.add_argument("--repo", type=Path, default=REPO, help="checkout whose stages/ run (default: this one)")
        p.add_argument("--keep-outputs", action="store_true", help="keep the stage's images.npy files")
        p.add_argument("--profile-cells", type=int, default=None, help="run cProfile on the stage at this size")
        p.add_argument("--million-repeats", type=int, default=1, help="runs per size (the fastest is reported)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    compare = million = None
    if args.what in ("compare", "all"):
        from .compare import run_compare

        compare = run_compare(
            n_samples=args.samples,
            n_genes=args.genes,
            height=args.size,
            width=args.size,
            embeddings=tuple(args.embeddings.split(",")),
            discretizations=tuple(args.discretizations.split(",")),
            repeats=args.repeats,
            seed=args.seed,
            transform_rows=tuple(int(r) for r in args.transform_rows.split(",") if r),
        )
    if args.what in ("million", "all"):
        from .million import run_million

        if args.sizes:
            sizes = args.sizes
        else:
            top = args.cells[0] if args.cells else 1_000_000
            sizes = tuple(s for s in (100_000, 300_000) if s < top) + (top,)
        million = run_million(
            sizes=sizes,
            chunk_size=args.chunk_size,
            repo=args.repo,
            keep_outputs=args.keep_outputs,
            profile_cells=args.profile_cells,
            repeats=args.million_repeats,
        )
    doc = write_results(args.out, compare=compare, million=million)
    print(table(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
