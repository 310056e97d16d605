"""Each benchmark's headline(result): the rows the Benchmarks page shows, read from a small JSON of the shape that
benchmark writes (tests/stage/test_bench.py reads real ones from tiny runs)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit

KEYS = {"measure", "ours", "reference", "ratio", "bar"}


def _rows(module, result: dict) -> dict[str, dict]:
    """headline's rows by measure, each checked to be a row the page can render."""
    rows = module.headline(result)
    assert rows and all(set(r) <= KEYS and isinstance(r["measure"], str) and len(r) > 1 for r in rows)
    assert module.WHAT.strip() and module.REFERENCE.strip()
    return {r["measure"]: r for r in rows}


def test_train():
    from bench import train

    cpu = {
        "device": "cpu",
        "arch": "resnet18",
        "samples": 1024,
        "image": [1, 32, 32],
        "batch_size": 64,
        "ours_images_per_s": 399.44,
        "plain_images_per_s": 387.02,
        "throughput_ratio_vs_plain_loop": 1.0321,
        "repeats": 3,
        "ours_mixed_precision_channels_last": False,
    }
    dense = {
        "device": "cpu",
        "genes": 2000,
        "samples": 2048,
        "preset": "small",
        "batch_size": 64,
        "ours_samples_per_s": 589.0,
        "plain_samples_per_s": 1106.0,
        "throughput_ratio_vs_plain_loop": 0.533,
    }
    result = {**cpu, "cpu": cpu, "cpu_threads": 2, "dense": {"2000": dense, "20000": {**dense, "genes": 20000}}}
    rows = _rows(train, result)
    assert rows["ResNet-18 images/s (32 x 32, batch 64, CPU)"] == {
        "measure": "ResNet-18 images/s (32 x 32, batch 64, CPU)",
        "ours": 399,
        "reference": 387,
        "ratio": 1.03,
    }
    assert list(rows)[1:] == [
        "dense network (small) samples/s at 20,000 genes",
        "dense network (small) samples/s at 2,000 genes",
    ]
    assert rows["dense network (small) samples/s at 2,000 genes"]["ratio"] == 0.53
    gpu = {**cpu, "device": "cuda", "batch_size": 256, "ours_images_per_s": 9000.0, "name": "Some GPU"}
    rows = _rows(train, {**result, "gpu": gpu})
    assert rows["ResNet-18 images/s (32 x 32, batch 256, Some GPU, mixed precision, channels-last)"]["ours"] == 9000


def test_preprocess():
    from bench import preprocess

    def timing(ours, theirs):
        return {"ours_s": ours, "pydeepinsight_s": theirs, "speedup": theirs / ours}

    transform = {
        disc: {
            **timing(ours, theirs),
            "rows": 4000,
            "float32": {"s": 0.009, "speedup": theirs / 0.009},
            "sparse_product_then_uint8": {"s": 0.05, "speedup": theirs / 0.05},
            "by_rows": {"512": timing(0.001, 0.016), "8192": timing(0.01, 0.47)},
        }
        for disc, ours, theirs in (("bin", 0.007, 0.1345), ("lsa", 0.0055, 0.1844))
    }
    sizes = [
        {"n_cells": n, "returncode": 0, "seconds": s, "peak_rss_gb": rss, "seconds_per_cell": s / n}
        for n, s, rss in ((100_000, 17.1, 0.9), (300_000, 25.4, 1.0), (1_000_000, 54.8, 1.23))
    ]
    doc = {
        "transform_speedup_vs_pydeepinsight": 19.21,
        "fit_speedup_vs_pydeepinsight": 0.96,
        "million_cells_seconds": 54.8,
        "million_cells_peak_rss_gb": 1.23,
        "compare": {
            "image": [64, 64],
            "fit": {"tsne_sklearn/bin": timing(10.0, 9.6), "tsne_sklearn/lsa": timing(10.0, 11.1)},
            "transform": transform,
        },
        "million": {
            "sizes": sizes,
            "n_genes": 2000,
            "image": [64, 64],
            "embedding": "tsne",
            "discretization": "lsa",
            "linear_fit": {"seconds_per_million_cells": 41.8, "fixed_seconds": 12.9, "max_relative_residual": 0.017},
            "million_cells_seconds": 54.8,
            "million_cells_peak_rss_gb": 1.23,
        },
    }
    rows = _rows(preprocess, doc)
    bin_row = rows["transform, discretization bin, 4,000 rows (ms)"]
    assert (bin_row["ours"], bin_row["reference"], bin_row["ratio"], bin_row["bar"]) == (
        7.0,
        134.5,
        "19.2x faster",
        "≥ 10x",
    )
    assert "bar" not in rows["transform, discretization lsa, 4,000 rows (ms)"]  # the bar is on the worst case
    assert rows["transform, 512 and 8,192 rows"]["ratio"] == "16x to 47x faster"
    assert rows["transform to float32 images instead of uint8"]["ratio"] == "14.9x faster (bin), 20.5x faster (lsa)"
    assert rows["fit, the worst configuration"] == {
        "measure": "fit, the worst configuration",
        "ratio": "0.96x",
        "bar": "≥ 1x",
    }
    million = rows["1,000,000 cells x 2,000 genes through the stage (backed .h5ad, tsne/lsa, 64 x 64)"]
    assert million["ours"] == "54.8 s, peak RSS 1.23 GB"
    assert rows["time by cells (100,000, 300,000, 1,000,000)"]["ours"] == (
        "12.9 s fixed + 41.8 s per million cells (largest residual 1.7%)"
    )
    # compare only (million not run): no stage rows
    rows = _rows(preprocess, {**doc, "million": None})
    assert not any("cells" in m for m in rows)


def test_layout():
    from bench import layout

    def size(genes, ours_s, theirs_s, trust, unique, trust_points=None):
        return {
            "samples": 2000,
            "genes": genes,
            "trust_points": trust_points or genes,
            "ours": {"fit_seconds": ours_s, "trustworthiness": trust[0], "unique_pixel_share": unique[0]},
            "theirs": {"fit_seconds": theirs_s, "trustworthiness": trust[1], "unique_pixel_share": unique[1]},
            "fit_speedup_vs_pydeepinsight": round(theirs_s / ours_s, 2),
            "trustworthiness_difference": round(trust[0] - trust[1], 4),
            "unique_pixel_share_difference": round(unique[0] - unique[1], 4),
        }

    doc = {
        "image": [128, 128],
        "sizes": {
            "2000": size(2000, 18.2, 17.2, (0.5248, 0.5264), (0.5, 0.5)),
            "10000": size(10000, 19.8, 134.4, (0.5401, 0.5410), (0.292, 0.243)),
            "20000": size(20000, 58.2, 258.3, (0.5483, 0.5528), (0.134, 0.105), trust_points=10000),
        },
    }
    rows = layout.headline(doc)
    assert rows[0] == {"measure": "fit at 10,000 genes (s)", "ours": 19.8, "reference": 134.4, "ratio": "6.8x faster"}
    by = _rows(layout, doc)
    assert by["trustworthiness at 10,000 genes"]["ratio"] == "-0.0009" and by["trustworthiness at 10,000 genes"]["bar"]
    assert by["genes alone on a pixel at 10,000 genes"]["ours"] == "29.2%"
    assert by["genes alone on a pixel at 10,000 genes"]["ratio"] == "+4.9 points"
    assert "trustworthiness at 20,000 genes (on 10,000 genes drawn at random)" in by
    assert by["fit at 2,000 genes (s; Barnes-Hut on both sides)"]["ratio"] == "1.1x slower"


def test_loaders():
    from bench import loaders

    def reader(seconds, peak):
        return {"seconds": seconds, "peak_rss_bytes": peak, "rss_before_bytes": 2**28, "shape": [2000, 56200]}

    doc = {
        "genes": 56200,
        "sizes": {
            "500": {"ours": reader(2.0, 2**29), "pandas": reader(2.2, 2**30), "read_speedup_vs_pandas": 1.1},
            "2000": {
                "ours": reader(7.0, int(0.87 * 2**30)),
                "pandas": reader(8.7, int(2.22 * 2**30)),
                "read_speedup_vs_pandas": 1.24,
            },
        },
        "read_speedup_vs_pandas": 1.24,
        "peak_rss_ratio": 0.94,
        "peak_rss_fixed_bytes": 165 * 2**20,
        "projected": {
            "samples": 17382,
            "ours_seconds": 63.0,
            "ours_peak_rss_bytes": 5.1 * 2**30,
            "pandas_seconds": 79.0,
            "pandas_peak_rss_bytes": 19.0 * 2**30,
        },
    }
    rows = _rows(loaders, doc)
    assert rows["working memory (peak RSS above the start), straight-line fit"]["ours"] == (
        "0.94 x the kept float32 matrix + 165 MiB"
    )
    assert (rows["peak at 2,000 samples (GiB)"]["ours"], rows["peak at 2,000 samples (GiB)"]["reference"]) == (
        0.87,
        2.22,
    )
    assert rows["time at 2,000 samples (s)"]["ratio"] == "1.24x faster (1.10-1.24x over all sizes)"
    projected = rows["projected to GTEx v8's 17,382 samples"]
    assert (projected["ours"], projected["reference"]) == ("63 s, 5.1 GiB", "79 s, 19.0 GiB")


def test_explain():
    from bench import explain

    result = {
        "device": "cpu",
        "samples": 199,
        "batch_size": 64,
        "ours_samples_per_s": 761.2,
        "per_sample_samples_per_s": 76.3,
        "explain_speedup_vs_per_sample_loop": 9.98,
        "max_abs_difference": 1e-6,
        "max_relative_difference": 0.0043,
        "samples_agreeing": 196 / 199,
        "demo_trust_seconds": None,
        "demo_biology_seconds": None,
    }
    rows = explain.headline(result)
    _rows(explain, result)
    assert rows[0] == {
        "measure": "samples/s (199 samples, batches of 64, cpu)",
        "ours": 761,
        "reference": 76,
        "ratio": "10.0x",
        "bar": "20x",
    }
    assert rows[1]["ours"] == "0.004"
    assert rows[2]["ours"] == "98%"


def test_explain_memory():
    from bench import explain_memory

    def size(n, seconds, peak_gib, out_gib):
        return {
            "test_samples": n,
            "n_explained": n,
            "seconds": seconds,
            "peak_rss_bytes": int(peak_gib * 2**30),
            "output_bytes": int(out_gib * 2**30),
        }

    doc = {
        "methods": ["saliency", "grad_cam"],
        "sizes": {"100000": size(100000, 590.0, 1.17, 2.77), "10000": size(10000, 84.0, 1.08, 0.28)},
        "explain_peak_rss_growth": 1.09,
        "samples_ratio": 10.0,
    }
    rows = _rows(explain_memory, doc)
    peak = rows["peak RSS at 10,000 and 100,000 samples (GiB)"]
    assert (peak["ours"], peak["ratio"], peak["bar"]) == ("1.08, 1.17", "1.09x for 10x the samples", "< 2x")
    assert rows["files written (GiB)"]["ours"] == "0.28, 2.77"
    assert rows["wall time (s)"]["ours"] == "84, 590 (169 samples/s at 100,000, 2 methods: saliency, grad_cam)"


def test_wide():
    from bench import wide

    doc = {
        "samples": 5000,
        "genes": 20000,
        "epochs": 5,
        "stages": {
            "preprocess": {"seconds": 167.0, "peak_rss_gib": 2.01},
            "train_torch": {"seconds": 352.0, "peak_rss_gib": 2.29},
            "explain": {"seconds": 63.0, "peak_rss_gib": 1.33},
        },
        "peak_rss_gib": 2.29,
        "models": {
            "dense": {"macro_f1": 0.485, "accuracy": 0.5},
            "logistic_regression": {"macro_f1": 0.484, "accuracy": 0.5},
            "random_forest": {"macro_f1": 0.678, "accuracy": 0.7},
        },
        "dense_marker_precision": 0.775,
    }
    rows = _rows(wide, doc)
    assert rows["peak RSS, whole pipeline (GiB; 5,000 samples x 20,000 genes, 5 epochs)"]["ours"] == 2.29
    assert rows["preprocess / train_torch / explain"]["ours"] == "167 s 2.01 GiB / 352 s 2.29 GiB / 63 s 1.33 GiB"
    f1 = rows["held-out macro-F1: random forest, dense network, logistic regression"]
    assert f1["ours"] == "0.678, 0.485, 0.484"
    assert rows["planted markers in each class's top 10 (dense network, saliency)"]["ours"] == "77.5%"
    assert len(_rows(wide, {**doc, "dense_marker_precision": None})) == 3


def test_mri():
    from bench import mri

    def variant(params, mib, seconds):
        return {"trainable_params": params, "peak_step_memory_bytes": mib * 2**20, "step_seconds": seconds}

    frozen, full = variant(3591838, 663, 1.46), variant(4693534, 2121, 6.0)
    result = {
        "model": "efficientnet-b0",
        "input": [2, 4, 128, 128, 128],
        "device": "cpu",
        "frozen": frozen,
        "full": full,
        "peak_memory_ratio_frozen_vs_full": 663 / 2121,
        "trainable_params_ratio_frozen_vs_full": 3591838 / 4693534,
        "step_time_ratio_frozen_vs_full": 1.46 / 6.0,
    }
    rows = _rows(mri, result)
    memory = rows["step memory (MiB; efficientnet-b0, input 2 x 4 x 128 x 128 x 128, cpu)"]
    assert (memory["ours"], memory["reference"], memory["ratio"], memory["bar"]) == (663, 2121, 0.313, "≤ 1/3")
    assert rows["trainable parameters"] == {
        "measure": "trainable parameters",
        "ours": "3.59 M",
        "reference": "4.69 M",
        "ratio": 0.765,
    }
    assert rows["step time (s)"]["ratio"] == 0.24
