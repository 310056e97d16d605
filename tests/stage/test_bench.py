"""The benchmark harness runs (on a tiny matrix) and writes its JSON; no timing is asserted here (make bench)."""

from __future__ import annotations

import importlib.util
import json

import pytest

# Skip only when pyDeepInsight is absent: when just its undeclared imports (cv2, grad-cam, torchcam) are missing,
# bench.pdi imports it anyway with placeholders, so importorskip("pyDeepInsight") would skip for no reason.
if importlib.util.find_spec("pyDeepInsight") is None:
    pytest.skip("pyDeepInsight is not installed (the bench extra)", allow_module_level=True)


def _headline(out) -> dict[str, dict]:
    """The Benchmarks page's rows for a benchmark's real JSON, through the entry record-bench writes (bench/NAME.py's
    headline), read back from its YAML text; by measure."""
    import yaml

    from shared import docs

    entry = docs.bench_entry(out, "test", {"train_images_per_s": None, "cores": 1})
    assert yaml.safe_load(docs._entry_text(entry))[0] == entry
    rows = entry["figures"]
    assert rows and all(r["measure"] and len(r) > 1 for r in rows)
    return {r["measure"]: r for r in rows}


def test_compare_writes_the_headline_keys_and_placement(tmp_path):
    from bench.preprocess import HEADLINE, main

    out = tmp_path / "preprocess.json"
    assert (
        main(
            [
                "--out",
                str(out),
                "compare",
                "--samples",
                "300",
                "--genes",
                "100",
                "--size",
                "16",
                "--embeddings",
                "pca",
                "--repeats",
                "1",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    for key in HEADLINE:
        assert key in doc
    assert doc["transform_speedup_vs_pydeepinsight"] > 0
    assert doc["fit_speedup_vs_pydeepinsight"] > 0
    assert doc["million_cells_seconds"] is None  # not run here
    assert doc["machine"]["nproc"] >= 1
    for disc in ("bin", "lsa"):
        place = doc["compare"]["placement"][disc]
        for level in ("end_to_end", "same_rotation", "same_convention"):
            assert 0.0 <= place[level] <= 1.0
        # with the same rectangle and the same grid convention, both libraries put every gene on the same pixel
        # (lsa: or on an assignment of exactly the same total cost)
        if disc == "bin":
            assert place["same_convention"] == 1.0
        else:
            cost = place["same_convention_cost"]
            assert cost["ours"] == pytest.approx(cost["pydeepinsight"], rel=1e-9)
        assert place["pixel_values"]["same_layout_max_abs_diff"] < 1e-5
    rows = _headline(out)
    assert {"transform, discretization bin, 300 rows (ms)", "fit, embedding/discretization pca/lsa (s)"} <= set(rows)
    assert not any("cells" in m for m in rows)  # the million cells were not run


def test_explain_bench_writes_its_headline_key(tmp_path):
    from bench.explain import main

    out = tmp_path / "explain.json"
    assert (
        main(
            [
                "--samples",
                "12",
                "--size",
                "8",
                "--batch",
                "4",
                "--repeats",
                "1",
                "--out",
                str(out),
                "--demo",
                str(tmp_path / "none.json"),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["explain_speedup_vs_per_sample_loop"] > 0
    # both compute the same attributions: every sample's map to rounding, or all but one, whose ReLU input lies
    # within rounding of zero on this CPU's kernels (bench.explain.relative_differences)
    assert doc["samples_agreeing"] >= 11 / 12, doc["max_relative_difference"]
    assert _headline(out)["samples/s (12 samples, batches of 4, cpu)"]["ours"] > 0


def test_layout_bench_writes_fit_speed_and_quality_for_both(tmp_path):
    from bench.layout import main

    out = tmp_path / "layout.json"
    assert main(["--genes", "150", "--samples", "60", "--size", "16", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["sizes"]["150"]
    assert entry["fit_speedup_vs_pydeepinsight"] > 0
    for side in ("ours", "theirs"):
        assert 0.5 < entry[side]["trustworthiness"] <= 1.0  # better than random coordinates (about 0.5)
        assert 0.0 < entry[side]["unique_pixel_share"] <= 1.0
    assert list(_headline(out)) == [
        "fit at 150 genes (s; Barnes-Hut on both sides)",
        "trustworthiness at 150 genes",
        "genes alone on a pixel at 150 genes",
    ]


def test_loaders_bench_reads_the_same_matrix_both_ways(tmp_path):
    from bench.loaders import main

    out = tmp_path / "loaders.json"
    assert main(["--genes", "400", "--samples", "30,60", "--tmp", str(tmp_path), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    for n in ("30", "60"):
        entry = doc["sizes"][n]
        assert entry["ours"]["shape"] == entry["pandas"]["shape"] == [int(n), 400]
        assert entry["ours"]["dtype"] == "float32"
    assert doc["read_speedup_vs_pandas"] > 0 and "peak_rss_ratio" in doc and doc["projected"]["samples"] == 17382
    assert "projected to GTEx v8's 17,382 samples" in _headline(out)


def test_explain_memory_bench_explains_every_test_sample_at_each_size(tmp_path):
    from bench.explain_memory import main

    out = tmp_path / "explain_memory.json"
    assert main(["--sizes", "40,80", "--methods", "saliency", "--tmp", str(tmp_path), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    small, large = doc["sizes"]["40"], doc["sizes"]["80"]
    assert (small["n_explained"], large["n_explained"]) == (40, 80)
    assert large["output_bytes"] > small["output_bytes"] > 0 and small["peak_rss_bytes"] > 0
    assert doc["explain_peak_rss_growth"] > 0 and doc["samples_ratio"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["explain_memory.json"]  # the experiments are removed
    assert _headline(out)["peak RSS at 40 and 80 samples (GiB)"]["bar"] == "< 2x"


def test_wide_bench_runs_every_stage_on_all_genes(tmp_path):
    from bench.wide import main

    out = tmp_path / "wide.json"
    assert main(["--samples", "300", "--genes", "400", "--epochs", "1", "--tmp", str(tmp_path), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["stages"]) == {"preprocess", "train_torch", "explain"}
    assert all(s["peak_rss_gib"] > 0 for s in doc["stages"].values())
    assert set(doc["models"]) == {"dense", "logistic_regression", "random_forest"}
    assert all(0 <= m["macro_f1"] <= 1 for m in doc["models"].values())
    assert "peak RSS, whole pipeline (GiB; 300 samples x 400 genes, 1 epoch)" in _headline(out)


def test_train_bench_compares_both_loops_and_reads_as_headline_rows(tmp_path):
    from bench.train import main

    out = tmp_path / "train.json"
    args = ["--samples", "64", "--size", "8", "--batch-size", "32", "--repeats", "1"]
    assert main([*args, "--dense-genes", "50", "--dense-samples", "64", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["cpu"]["ours_images_per_s"] > 0 and doc["dense"]["50"]["throughput_ratio_vs_plain_loop"] > 0
    rows = _headline(out)
    assert list(rows) == ["ResNet-18 images/s (8 x 8, batch 32, CPU)", "dense network (small) samples/s at 50 genes"]
