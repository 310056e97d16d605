"""Reading a GTEx-sized text matrix: the preprocess loader (streamed, pyarrow) beside pandas.read_csv, in one run.

``python -m bench.loaders [--genes 56200] [--samples 500,1000,2000] [--project 17382]``

For each sample count a synthetic file in the layout of the GTEx v8 all-tissue read-count matrix is written
(gzip; ``#1.2``, the dimensions line, ``Name``/``Description`` then one column per sample; ENSEMBL ids with
versions; integer counts, about half of them 0, as in the published file) with its sample-attribute table (SAMPID,
SMTSD). Each reader then runs in a fresh process, which reports its wall time and peak resident memory
(``ru_maxrss``) beside the memory it held before reading (the interpreter and its imports):

- ours: ``read_expression`` with ``format: gct`` (the stage's loader: streamed block by block, float32, only the
  labelled samples; the result is the AnnData preprocess goes on with);
- pandas: ``pandas.read_csv(path, sep='\\t', skiprows=2, index_col=[0, 1])``, the usual way to read a GCT.

The loader's working memory is our peak minus the memory before reading; ``peak_rss_ratio`` is its growth per
byte of the float32 matrix kept (genes x samples x 4 bytes), the slope of a straight line over the sizes, and
``peak_rss_fixed_bytes`` that line's intercept (the fixed part: pyarrow's buffers, the ids); the plain ratio at
the largest size is ``peak_rss_ratio_at_largest``. ``read_speedup_vs_pandas`` = pandas' time / ours.
Both are reported at the largest size (the headline) and per size; time and memory are projected to
``--project`` samples (the full GTEx v8 matrix: 17,382) by a straight-line fit over the sizes. Written to
``outputs/bench/loaders.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared.artifacts import write_json_atomic

from .figures import count, faster, gib, row

DEFAULT_OUT = Path("outputs/bench/loaders.json")
GTEX_SAMPLES = 17_382
WHAT = (
    "Reading a GTEx-layout GCT (56,200 genes; 500, 1,000 and 2,000 samples; gzip; integer counts) with "
    "expression.format gct, each reader in a fresh process."
)
REFERENCE = "pandas.read_csv(path, sep='\\t', skiprows=2, index_col=[0, 1])"


def write_gtex_like(folder: Path, n_genes: int, n_samples: int, seed: int = 0) -> tuple[Path, Path]:
    """(the gzip GCT, the sample-attribute table) of a synthetic matrix in the published layout."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    genes = [f"ENSG{i:011d}.{i % 9 + 1}" for i in range(n_genes)]
    samples = [f"GTEX-{i // 20:04X}-{i % 20:04d}-SM-{i:05d}" for i in range(n_samples)]
    gct = folder / f"gtex_{n_genes}x{n_samples}.gct.gz"
    sink = pa.CompressedOutputStream(str(gct), "gzip")
    sink.write(f"#1.2\n{n_genes}\t{n_samples}\n".encode())
    sink.write(("\t".join(["Name", "Description", *samples]) + "\n").encode())
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    step = 2000
    for start in range(0, n_genes, step):
        stop = min(start + step, n_genes)
        mean = rng.lognormal(1.5, 2.0, size=(stop - start, 1))
        counts = rng.poisson(mean * rng.gamma(2.0, 0.5, size=(stop - start, n_samples))).astype(np.int64)
        columns = {"Name": pa.array(genes[start:stop]), "Description": pa.array([f"G{i}" for i in range(start, stop)])}
        columns |= {s: pa.array(counts[:, j]) for j, s in enumerate(samples)}
        pacsv.write_csv(pa.table(columns), sink, write_options=options)
    sink.close()
    labels = folder / f"attributes_{n_samples}.txt"
    labels.write_text("SAMPID\tSMTSD\n" + "".join(f"{s}\tTissue {i % 5}\n" for i, s in enumerate(samples)))
    return gct, labels


def _child(which: str, gct: str, labels: str) -> dict:
    """Run in a fresh process: read the file one way, report seconds and memory."""
    import pandas as pd

    if which == "ours":
        import anndata  # noqa: F401  (imported before measuring, as the stage has it)

        from stages.preprocess.formats import read_expression
        from stages.preprocess.params import Expression
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if which == "ours":
        adata = read_expression(Expression(path=gct, format="gct", labels=labels, label_key="SMTSD"))
        shape, dtype = adata.shape, str(adata.X.dtype)
    else:
        frame = pd.read_csv(gct, sep="\t", skiprows=2, index_col=[0, 1])
        shape, dtype = frame.shape[::-1], str(frame.dtypes.iloc[0])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "rss_before_bytes": before,
        "shape": list(shape),
        "dtype": dtype,
    }


def measure(which: str, gct: Path, labels: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loaders", "--child", which, str(gct), str(labels)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_loaders(
    n_genes: int = 56_200, sizes=(500, 1000, 2000), project: int = GTEX_SAMPLES, folder: Path | None = None
) -> dict:
    per_size = {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for n in sizes:
            gct, labels = write_gtex_like(Path(tmp), n_genes, n)
            entry = {
                "genes": n_genes,
                "samples": n,
                "file_bytes": gct.stat().st_size,
                "kept_float32_bytes": n_genes * n * 4,
            }
            for which in ("ours", "pandas") if n % 2 else ("pandas", "ours"):
                entry[which] = measure(which, gct, labels)
                print(
                    f"{n} samples: {which} {entry[which]['seconds']:.1f} s, peak "
                    f"{entry[which]['peak_rss_bytes'] / 2**30:.2f} GiB",
                    flush=True,
                )
            ours = entry["ours"]
            entry["peak_rss_ratio"] = round(
                (ours["peak_rss_bytes"] - ours["rss_before_bytes"]) / entry["kept_float32_bytes"], 3
            )
            entry["read_speedup_vs_pandas"] = round(entry["pandas"]["seconds"] / ours["seconds"], 2)
            per_size[str(n)] = entry
            gct.unlink()
    doc = {
        "what": "GTEx-layout gzip GCT read: preprocess loader (pyarrow, streamed, float32) vs pandas.read_csv",
        "genes": n_genes,
        "sizes": per_size,
    }
    head = per_size[str(max(sizes))]
    doc["read_speedup_vs_pandas"] = head["read_speedup_vs_pandas"]
    doc["peak_rss_ratio_at_largest"] = head["peak_rss_ratio"]
    if len(sizes) >= 2:
        # working memory = ratio x kept matrix + fixed: the slope over the sizes is the ratio the issue bounds
        kept = np.array([per_size[str(n)]["kept_float32_bytes"] for n in sizes], dtype=float)
        used = np.array(
            [per_size[str(n)]["ours"]["peak_rss_bytes"] - per_size[str(n)]["ours"]["rss_before_bytes"] for n in sizes],
            dtype=float,
        )
        slope, fixed = np.polyfit(kept, used, 1)
        doc["peak_rss_ratio"] = round(float(slope), 3)
        doc["peak_rss_fixed_bytes"] = int(fixed)
        xs = np.array(sizes, dtype=float)
        projection = {"samples": project}
        for which in ("ours", "pandas"):
            for key, scale in (("seconds", 1.0), ("peak_rss_bytes", 1.0)):
                ys = np.array([per_size[str(n)][which][key] for n in sizes], dtype=float) / scale
                slope, intercept = np.polyfit(xs, ys, 1)
                projection[f"{which}_{key}"] = round(float(slope * project + intercept), 1)
        projection["kept_float32_bytes"] = n_genes * project * 4
        doc["projected"] = projection
    return doc


def headline(doc: dict) -> list[dict]:
    """The Benchmarks page's rows: the loader's working memory per byte kept (the straight-line fit over the sizes),
    peak and time at the largest size beside pandas', and both projected to the full matrix."""
    rows = []
    if "peak_rss_ratio" in doc:
        rows.append(
            row(
                "working memory (peak RSS above the start), straight-line fit",
                f"{doc['peak_rss_ratio']:.2f} x the kept float32 matrix + {doc['peak_rss_fixed_bytes'] / 2**20:.0f} "
                "MiB",
                bar="< 1.5x",
            )
        )
    largest = max(doc["sizes"], key=int)
    e = doc["sizes"][largest]
    rows.append(
        row(
            f"peak at {count(largest)} samples (GiB)",
            gib(e["ours"]["peak_rss_bytes"]),
            gib(e["pandas"]["peak_rss_bytes"]),
            f"{e['ours']['peak_rss_bytes'] / e['pandas']['peak_rss_bytes']:.2f}",
        )
    )
    speedups = [s["read_speedup_vs_pandas"] for s in doc["sizes"].values()]
    rows.append(
        row(
            f"time at {count(largest)} samples (s)",
            round(e["ours"]["seconds"], 1),
            round(e["pandas"]["seconds"], 1),
            faster(e["read_speedup_vs_pandas"], 2)
            + (f" ({min(speedups):.2f}-{max(speedups):.2f}x over all sizes)" if len(speedups) > 1 else ""),
        )
    )
    p = doc.get("projected")
    if p:
        where = "GTEx v8's " if p["samples"] == GTEX_SAMPLES else ""
        rows.append(
            row(
                f"projected to {where}{count(p['samples'])} samples",
                f"{p['ours_seconds']:.0f} s, {gib(p['ours_peak_rss_bytes'], 1)} GiB",
                f"{p['pandas_seconds']:.0f} s, {gib(p['pandas_peak_rss_bytes'], 1)} GiB",
            )
        )
    return rows


def table(doc: dict) -> str:
    lines = ["samples  ours s  pandas s  speedup  ours peak GiB  pandas peak GiB  kept GiB  working/kept"]
    for n, e in doc["sizes"].items():
        lines.append(
            f"{n:>7} {e['ours']['seconds']:>7.1f} {e['pandas']['seconds']:>9.1f} "
            f"{e['read_speedup_vs_pandas']:>7.2f}x {e['ours']['peak_rss_bytes'] / 2**30:>14.2f} "
            f"{e['pandas']['peak_rss_bytes'] / 2**30:>16.2f} {e['kept_float32_bytes'] / 2**30:>9.2f} "
            f"{e['peak_rss_ratio']:>15.3f}"
        )
    if "peak_rss_ratio" in doc:
        lines.append(
            f"working memory = {doc['peak_rss_ratio']:.3f} x kept + {doc['peak_rss_fixed_bytes'] / 2**20:.0f} MiB"
        )
    if "projected" in doc:
        p = doc["projected"]
        lines.append(
            f"projected to {p['samples']} samples: ours {p['ours_seconds']:.0f} s, "
            f"{p['ours_peak_rss_bytes'] / 2**30:.1f} GiB; pandas {p['pandas_seconds']:.0f} s, "
            f"{p['pandas_peak_rss_bytes'] / 2**30:.1f} GiB (kept float32: "
            f"{p['kept_float32_bytes'] / 2**30:.1f} GiB)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(*argv[1:4])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.loaders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=56_200)
    parser.add_argument("--samples", default="500,1000,2000", help="comma-separated sample counts")
    parser.add_argument("--project", type=int, default=GTEX_SAMPLES)
    parser.add_argument(
        "--tmp", type=Path, default=None, help="folder for the synthetic files (default: the system's temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    doc = run_loaders(args.genes, tuple(int(s) for s in args.samples.split(",")), args.project, args.tmp)
    write_json_atomic(args.out, doc)
    print(table(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
