"""Explanations of large test sets: the explain stage's peak memory at 10,000 and 100,000 held-out samples.

``python -m bench.explain_memory [--sizes 10000,100000] [--methods saliency,grad_cam] [--tmp DIR]``

For each size an experiment folder is written like train_torch leaves it: a 1,024-gene layout on a 32 x 32 image
(genes placed at random on the pixels, so some share one, as a t-SNE layout places them), the uint8 images and the
float32 gene values they were rendered from, samples.csv with the held-out test split, genes.csv, the pixel->gene
map, and a ``small_cnn`` classifier (one fold model) with random weights (memory and speed do not depend on the
weights). Then ``stages.explain``'s per-model work (``explain_model``: prediction, every method in chunks,
per-sample arrays, class maps, rankings, sample_top_genes.csv, attributions.h5ad, the faithfulness and
sanity checks on their bounded subsets) runs in a fresh process under ``bench.measure``, which reports its wall time
and peak resident memory. Per-sample arrays are written at every size (``per_sample.arrays_max_samples`` above the
largest), so both sizes write the same kinds of output.

Reported per size: seconds, peak RSS, bytes written; and ``explain_peak_rss_growth`` = peak RSS at the largest size
/ at the smallest (the issue's bound: < 2). Written to ``outputs/bench/explain_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared.artifacts import write_json_atomic

from .figures import count, gib, row

DEFAULT_OUT = Path("outputs/bench/explain_memory.json")
GENES, SIZE, CLASSES = 1024, 32, 5
WHAT = (
    "explain on large test sets: 1,024 genes on 32 x 32 images, a small_cnn, saliency and Grad-CAM with their "
    "arrays, rankings, tables, attributions.h5ad and trust checks, each size in a fresh process."
)
REFERENCE = "the same stage on 10x fewer samples"


def write_experiment(exp: Path, n_test: int, n_train: int = 256, seed: int = 0, block: int = 10_000) -> Path:
    """An experiment folder as preprocess and train_torch leave it, written a block of samples at a time; returns
    the model's folder."""
    import torch

    from shared.dataset import GENE_MAP, VECTORS, Dataset
    from shared.genemap import PixelGeneMap
    from shared.models import build_model, save_classifier
    from stages.explain.store import NpyRows

    rng = np.random.default_rng(seed)
    data, model_dir = exp / "preprocess", exp / "train_torch" / "small_cnn"
    data.mkdir(parents=True)
    model_dir.mkdir(parents=True)
    genes = np.array([f"G{i:04d}" for i in range(GENES)])
    gmap = PixelGeneMap.from_assignment(rng.integers(0, SIZE * SIZE, GENES), (1, SIZE, SIZE), genes)
    gmap.save(model_dir / "pixel_genes.npz")
    pd.DataFrame({"gene": genes}).to_csv(data / "genes.csv", index=False)
    n = n_train + n_test
    labels = np.arange(n) % CLASSES
    samples = pd.DataFrame(
        {
            "sample": [f"S{i:07d}" for i in range(n)],
            "label": [f"class{c}" for c in labels],
            "label_index": labels,
            "split": ["train"] * n_train + ["test"] * n_test,
        }
    )
    samples.to_csv(data / "samples.csv", index=False)
    values = NpyRows(data / "vectors.npy", (n, GENES), np.float32)
    images = NpyRows(data / "images.npy", (n, 1, SIZE, SIZE), np.uint8)
    shift = rng.random((CLASSES, GENES)).astype(np.float32)  # each class a profile of its own
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        v = np.clip(0.5 * shift[labels[rows]] + 0.5 * rng.random((len(rows), GENES), dtype=np.float32), 0, 1)
        values.write(v)
        images.write(np.round(gmap.render(v) * 255).astype(np.uint8))
    values.close()
    images.close()
    classes = [f"class{c}" for c in range(CLASSES)]
    # the input spec as the trainers write it, from dataset.json's keys held in memory (no dataset.json is written);
    # the map lies in the model's folder
    ds = Dataset(data, {"classes": classes, "gene_map": GENE_MAP, "vectors": VECTORS}, samples)
    spec = {
        "arch": "small_cnn",
        "input_shape": [1, SIZE, SIZE],
        "n_classes": CLASSES,
        "classes": classes,
        "dropout": 0.5,
        "input": ds.model_input("image", trainer=model_dir.relative_to(exp).as_posix()),
    }
    members = []
    for k in range(1):
        torch.manual_seed(k)
        members.append(build_model(spec, [0.3], [0.2]).eval())
    save_classifier(model_dir, spec, members)
    return model_dir


def _child(exp: str, out: str, methods: str, arrays_max: str) -> dict:
    """In a fresh process: explain the model of ``exp`` into ``out`` (stages.explain's per-model work)."""
    import torch

    from stages.explain.__main__ import explain_model
    from stages.explain.params import Explain

    settings = Explain.model_validate(
        {
            "methods": methods.split(","),
            "biology": {"enabled": False},
            "stability": {"enabled": False},
            "per_sample": {"arrays_max_samples": int(arrays_max)},
        }
    )
    t0 = time.perf_counter()
    entry = explain_model(
        "small_cnn", Path(exp) / "train_torch" / "small_cnn", Path(exp), Path(out), settings, torch.device("cpu"), 0
    )
    return {
        "seconds": time.perf_counter() - t0,
        "n_explained": entry["n_explained"],
        "per_sample_arrays": entry["per_sample_arrays"],
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(sizes: tuple[int, ...], methods: str, tmp: Path | None = None) -> dict:
    from bench.measure import measure

    per_size = {}
    with tempfile.TemporaryDirectory(dir=tmp) as root:
        for n in sizes:
            exp = Path(root) / f"exp{n}"
            t0 = time.perf_counter()
            write_experiment(exp, n)
            written = time.perf_counter() - t0
            out = exp / "explain"
            log = Path(root) / f"explain{n}.log"
            m = measure(
                [sys.executable, "-m", "bench.explain_memory", "--child", str(exp), str(out), methods, str(max(sizes))],
                log,
            )
            if m["returncode"] != 0:
                raise SystemExit(f"explain of {n} samples failed: see\n" + log.read_text()[-3000:])
            child = json.loads(log.read_text().strip().splitlines()[-1])
            per_size[str(n)] = {
                "test_samples": n,
                "n_explained": child["n_explained"],
                "seconds": round(m["seconds"], 1),
                "explain_seconds": round(child["seconds"], 1),
                "peak_rss_bytes": m["peak_rss_kb"] * 1024,
                "output_bytes": folder_bytes(out),
                "input_bytes": folder_bytes(exp / "preprocess"),
                "fixture_seconds": round(written, 1),
            }
            print(
                f"{n} test samples: explain {child['seconds']:.0f} s, peak RSS "
                f"{m['peak_rss_kb'] / 2**20:.2f} GiB, {folder_bytes(out) / 2**30:.2f} GiB written",
                flush=True,
            )
            shutil.rmtree(exp)
    low, high = per_size[str(min(sizes))], per_size[str(max(sizes))]
    return {
        "what": "explain_model on the 1,024-gene 32 x 32 layout (small_cnn, one fold model), peak RSS of a fresh "
        "process at each number of held-out test samples",
        "methods": methods.split(","),
        "sizes": per_size,
        "explain_peak_rss_growth": round(high["peak_rss_bytes"] / low["peak_rss_bytes"], 3),
        "samples_ratio": max(sizes) / min(sizes),
    }


def headline(doc: dict) -> list[dict]:
    """The Benchmarks page's rows: peak RSS at each size and its growth (the < 2x bar), the files written, the
    wall time and the samples explained per second at the largest size."""
    sizes = sorted(doc["sizes"].items(), key=lambda kv: int(kv[0]))
    names = " and ".join(count(n) for n, _ in sizes)
    methods = doc.get("methods") or []
    largest = sizes[-1][1]
    rate = largest["n_explained"] / largest["seconds"]
    return [
        row(
            f"peak RSS at {names} samples (GiB)",
            ", ".join(f"{gib(e['peak_rss_bytes'])}" for _, e in sizes),
            ratio=f"{doc['explain_peak_rss_growth']:.2f}x for {doc['samples_ratio']:.0f}x the samples",
            bar="< 2x",
        ),
        row("files written (GiB)", ", ".join(f"{gib(e['output_bytes'])}" for _, e in sizes)),
        row(
            "wall time (s)",
            ", ".join(f"{e['seconds']:.0f}" for _, e in sizes)
            + f" ({rate:.0f} samples/s at {count(sizes[-1][0])}, {len(methods)} methods: {', '.join(methods)})",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(*argv[1:5])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.explain_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of held-out test samples")
    parser.add_argument("--methods", default="saliency,grad_cam")
    parser.add_argument(
        "--tmp", type=Path, default=None, help="folder for the experiments (default: the system's temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    doc = run(tuple(int(s) for s in args.sizes.split(",")), args.methods, args.tmp)
    write_json_atomic(args.out, doc)
    print(f"peak RSS grows {doc['explain_peak_rss_growth']:.2f}x for {doc['samples_ratio']:.0f}x the samples")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
