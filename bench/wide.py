"""All genes: preprocess, train_torch and explain on 20,000 input genes x 5,000 samples, each stage's wall time and
peak memory.

``python -m bench.wide [--samples 5000] [--genes 20000] [--epochs 5]``

The demo's synthetic transcriptome (``fixtures.synthetic.write_transcriptome``: planted markers, donors) is
written at the size asked; a config keeps every gene (``n_genes`` = all, a 128 x 128 layout), trains the dense
network (``dense_preset: small``) and both baselines (logistic regression; the random forest, ``max_features:
sqrt``) on the float32 vectors of all genes with 3 folds, and explains the dense network with saliency (the biology
checks off: the random forest's permutation importance permutes every gene, which at 20,000 genes is the cost of
60,000 forest predictions). Each stage runs as ``python -m stages.<stage> --config`` in a fresh process under
``bench.measure`` (peak RSS of that process: ``ru_maxrss``). Written to ``outputs/bench/wide.json`` with the
held-out macro-F1 of each model, so a run that fits in memory but learns nothing shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

from shared.artifacts import write_json_atomic

from .figures import count, row
from .measure import measure

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path("outputs/bench/wide.json")
STAGES = ("preprocess", "train_torch", "explain")
MODEL_NAMES = {"dense": "dense network", "logistic_regression": "logistic regression", "random_forest": "random forest"}
WHAT = (
    "The synthetic transcriptome at 5,000 samples x 20,000 genes, all kept (128 x 128 layout), the dense network "
    "and both baselines on all genes (3 folds, 5 epochs), saliency; each stage in a fresh process; biology checks off."
)
REFERENCE = "none (every gene through the pipeline)"


def config(h5ad: Path, markers: Path, n_genes: int, epochs: int) -> dict:
    return {
        "name": "wide",
        "seed": 0,
        "device": "cpu",
        "stages": list(STAGES),
        "expression": {"path": str(h5ad), "format": "h5ad", "label_key": "tumour_state", "group_key": "donor"},
        "preprocess": {
            "n_genes": n_genes,
            "height": 128,
            "width": 128,
            "save_vectors": True,
            "deepinsight": {"embedding": "tsne", "discretization": "bin"},
        },
        "train_torch": {
            "models": ["dense"],
            "baselines": ["logistic_regression", "random_forest"],
            "folds": 3,
            "epochs": epochs,
            "dense_preset": "small",
            "batch_size": 64,
        },
        "explain": {"methods": ["saliency"], "markers": str(markers), "biology": {"enabled": False}},
    }


def run(n_samples: int, n_genes: int, epochs: int, tmp: Path | None = None) -> dict:
    from fixtures.synthetic import write_transcriptome

    with tempfile.TemporaryDirectory(dir=tmp) as root:
        root = Path(root)
        h5ad, markers = write_transcriptome(root / "data", n_samples=n_samples, n_genes=n_genes)
        cfg = root / "wide.yaml"
        cfg.write_text(yaml.safe_dump(config(h5ad, markers, n_genes, epochs)))
        env = {
            **os.environ,
            "ONCOXAI_OUTPUTS": str(root / "outputs"),
            "ONCOXAI_PROGRESS": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        }
        stages = {}
        for stage in STAGES:
            log = root / f"{stage}.log"
            m = measure([sys.executable, "-m", f"stages.{stage}", "--config", str(cfg)], log, cwd=REPO, env=env)
            if m["returncode"] != 0:
                raise SystemExit(
                    f"{stage} failed on {n_genes} genes x {n_samples} samples:\n" + log.read_text()[-3000:]
                )
            stages[stage] = {"seconds": round(m["seconds"], 1), "peak_rss_gib": round(m["peak_rss_kb"] / 2**20, 3)}
            print(f"{stage}: {m['seconds']:.0f} s, peak RSS {m['peak_rss_kb'] / 2**20:.2f} GiB", flush=True)
        exp = root / "outputs" / "wide"
        models = {
            name: {
                k: json.loads((exp / "train_torch" / name / "metrics.json").read_text())["test"][k]
                for k in ("macro_f1", "accuracy")
            }
            for name in ("dense", "logistic_regression", "random_forest")
        }
        explain = json.loads((exp / "explain" / "metrics.json").read_text())
    return {
        "what": "preprocess, train_torch (dense + baselines) and explain (saliency) on every gene",
        "samples": n_samples,
        "genes": n_genes,
        "epochs": epochs,
        "stages": stages,
        "peak_rss_gib": max(s["peak_rss_gib"] for s in stages.values()),
        "models": models,
        "dense_marker_precision": explain["models"]
        .get("dense", {})
        .get("methods", {})
        .get("saliency", {})
        .get("marker_precision_at_10"),
    }


def headline(doc: dict) -> list[dict]:
    """The Benchmarks page's rows: the whole pipeline's peak memory, each stage's time and peak, each model's
    held-out macro-F1 (best first) and the planted markers the dense network's saliency ranks in each class's
    top 10."""
    size = f"{count(doc['samples'])} samples x {count(doc['genes'])} genes, {doc['epochs']} epoch" + "s" * (
        doc["epochs"] != 1
    )
    models = sorted(doc["models"].items(), key=lambda kv: -kv[1]["macro_f1"])
    rows = [
        row(f"peak RSS, whole pipeline (GiB; {size})", doc["peak_rss_gib"]),
        row(
            " / ".join(doc["stages"]),
            " / ".join(f"{s['seconds']:.0f} s {s['peak_rss_gib']:.2f} GiB" for s in doc["stages"].values()),
        ),
        row(
            "held-out macro-F1: " + ", ".join(MODEL_NAMES.get(name, name) for name, _ in models),
            ", ".join(f"{m['macro_f1']:.3f}" for _, m in models),
        ),
    ]
    if doc.get("dense_marker_precision") is not None:
        rows.append(
            row(
                "planted markers in each class's top 10 (dense network, saliency)",
                f"{doc['dense_marker_precision'] * 100:.1f}%",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wide", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    doc = run(args.samples, args.genes, args.epochs, args.tmp)
    write_json_atomic(args.out, doc)
    print(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
