"""End to end through make: the demo config finds the planted markers, and a second run does no work.

Runs ``configs/demo.yaml`` itself (on its own fixture and output folder), so the test checks what users run, less
two things that change no assertion here, both set in ``LIGHTER``:
- the demo's layout-sensitivity member (``preprocess.layout_sensitivity``: one more t-SNE layout and a ResNet-18
  trained on it, a quarter of train_torch's time), which no test here reads; tests/stage/test_layout_sensitivity.py
  runs that check through the four stages and checks what it writes;
- half of explain's sampling: SmoothGrad's noise samples, Integrated Gradients' steps and the samples
  of the faithfulness, sanity and stability checks; every method still gets every trust figure, and the explain
  stage takes about a fifth less time.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from fixtures.synthetic import write_transcriptome

from ..support import REPO, browser_or_skip, check_declared_outputs

pytestmark = pytest.mark.slow
STAGES = ("preprocess", "train_torch", "explain", "report")
# what the test leaves out of configs/demo.yaml (the docstring says why): the layout-sensitivity member, half of
# explain's sampling
LIGHTER = {
    "preprocess.layout_sensitivity.layouts": 0,
    "explain.smoothgrad.samples": 5,
    "explain.integrated_gradients.steps": 10,
    "explain.faithfulness.max_samples": 20,
    "explain.sanity.max_samples": 6,
    "explain.stability.max_samples": 20,
}


def _make(*args, env):
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args, "RUNNER=local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    data = tmp / "data"
    write_transcriptome(data)  # the demo's fixture, with the defaults make demo uses
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp / "outputs")}
    args = (
        f"ARGS=--set expression.path={data / 'expression.h5ad'} --set explain.markers={data / 'markers.csv'} "
        f"--set explain.biology.gene_sets={data / 'gene_sets.gmt'} "
        + " ".join(f"--set {key}={value}" for key, value in LIGHTER.items())
    )
    proc = _make("all", "CONFIG=configs/demo.yaml", args, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"env": env, "args": args, "exp": tmp / "outputs" / "demo"}


def test_small_demo_classifies_and_finds_planted_markers(pipeline):
    exp = pipeline["exp"]
    summary = json.loads((exp / "report" / "summary.json").read_text())
    model = summary["models"]["resnet18"]
    assert set(model) >= {"accuracy", "macro_f1", "macro_auc"}
    assert model["macro_f1"] >= 0.9, model  # held-out test split
    # the CNN and both baselines, side by side, and every pair compared on the same folds
    assert set(summary["models"]) == {"resnet18", "logistic_regression", "random_forest"}
    # a model that learned nothing is flagged, so that its maps are not read as biology
    for name, entry in summary["models"].items():
        assert entry["at_chance"] == (entry["macro_auc"] < 0.6), name
        assert entry["provider"] == "train_torch"
        own = json.loads((exp / "train_torch" / name / "metrics.json").read_text())["test"]  # each model its own
        assert {k: entry[k] for k in ("accuracy", "macro_f1", "macro_auc")} == {
            k: own[k] for k in ("accuracy", "macro_f1", "macro_auc")
        }, name
    assert not model["at_chance"]
    pairs = {frozenset((c["a"], c["b"])) for c in summary["comparisons"]}
    assert frozenset(("resnet18", "random_forest")) in pairs and len(pairs) == 3
    gradient = summary["explanations"]["resnet18/gradient"]
    assert gradient["marker_precision_at_10"] >= 0.8, gradient
    methods = (
        "saliency",
        "gradient",
        "input_x_gradient",
        "smoothgrad",
        "integrated_gradients",
        "grad_cam",
        "guided_grad_cam",
        "occlusion",
    )
    for method in methods:  # every method with its trust measures
        entry = summary["explanations"][f"resnet18/{method}"]
        assert 0 <= entry["marker_precision_at_10"] <= 1
        assert isinstance(entry["faithfulness"]["better_than_random"], bool)
        assert isinstance(entry["sanity"]["insensitive_to_model"], bool)
        folds = entry["stability"]["folds"]  # three fold models, each explained on its own
        assert folds["n"] == 3 and 0 <= folds["shared_top_k"] <= 1 and -1 <= folds["spearman"] <= 1
        assert ("draws" in entry["stability"]) == (method == "smoothgrad")
        assert (exp / "explain" / "resnet18" / method / "sample_top_genes.csv").is_file()
    # the planted model's gradient ranking is faithful (its deletion curve falls faster than a random order's)
    assert gradient["faithfulness"]["better_than_random"], gradient["faithfulness"]
    assert not gradient["sanity"]["insensitive_to_model"], gradient["sanity"]
    html = (exp / "report" / "index.html").read_text()
    assert ("did not learn the task" in html) == any(m["at_chance"] for m in summary["models"].values())
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert (exp / "train_torch" / "resnet18" / "tensorboard").is_dir()
    assert any(
        p.name.startswith("events.out.tfevents") for p in (exp / "train_torch" / "resnet18" / "tensorboard").rglob("*")
    )
    top = (exp / "explain" / "resnet18" / "gradient" / "top_genes.csv").read_text().splitlines()
    assert top[0] == "class,rank,gene,score" and len(top) > 1
    for key in ("fold models: top-k shared", "random draws: top-k shared", "faithful (vs random)"):
        assert key in html
    for stage in STAGES:  # every file declared, every always-written output there
        check_declared_outputs(exp / stage, stage)


def test_second_run_does_no_work(pipeline):
    exp, env, args = pipeline["exp"], pipeline["env"], pipeline["args"]
    stamps = {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    proc = _make("all", "CONFIG=configs/demo.yaml", args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout
    assert "stages." not in proc.stdout + proc.stderr
    assert stamps == {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}


def test_changed_section_reruns_only_what_depends_on_it(pipeline):
    exp, env, args = pipeline["exp"], pipeline["env"], pipeline["args"]
    before = {s: json.loads((exp / s / "manifest.json").read_text())["fingerprint"] for s in STAGES}
    proc = _make("all", "CONFIG=configs/demo.yaml", args + " --set report.title=Changed", env=env)
    assert proc.returncode == 0, proc.stderr
    after = {s: json.loads((exp / s / "manifest.json").read_text())["fingerprint"] for s in STAGES}
    assert [s for s in STAGES if before[s] != after[s]] == ["report"]
    assert "Changed" in (exp / "report" / "index.html").read_text()


def test_attributions_open_in_scanpy_with_the_readme_line(pipeline):
    """attributions.h5ad has the layers, varm and uns the docs name, and the docs' scanpy lines run on it."""
    import re

    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    path = pipeline["exp"] / "explain" / "resnet18" / "attributions.h5ad"
    adata = ad.read_h5ad(path)
    methods = {
        "saliency",
        "gradient",
        "input_x_gradient",
        "smoothgrad",
        "integrated_gradients",
        "grad_cam",
        "guided_grad_cam",
        "occlusion",
    }
    assert set(adata.layers) == methods and adata.n_vars == 256
    assert {f"{m}_class_means" for m in methods} <= set(adata.varm)
    assert {"top_genes", "trust", "config", "classes", "methods"} <= set(adata.uns)
    assert {"label", "prediction", "p_true_class", "correct", "split", "conformal_set", "conformal_set_size"} <= set(
        adata.obs
    )
    sets = pd.read_csv(
        pipeline["exp"] / "train_torch" / "resnet18" / "test_conformal.csv",
        dtype={"sample": str},
        keep_default_na=False,
    ).set_index("sample")
    assert (adata.obs["conformal_set"] == sets.loc[adata.obs_names, "set"].to_numpy()).all()
    assert (adata.obs["conformal_set_size"] == sets.loc[adata.obs_names, "set_size"].to_numpy()).all()
    trust = json.loads(adata.uns["trust"])
    assert set(trust["gradient"]) == {"faithfulness", "sanity", "stability"}
    page = (REPO / "docs" / "concepts" / "explanations.md").read_text()
    block = re.search(r"attributions\.h5ad` for scanpy.*?```python\n(.*?)```", page, re.S).group(1)
    code = block.replace('"outputs/demo/explain/resnet18/attributions.h5ad"', repr(str(path)))
    assert code != block
    # matplotlib's Agg backend: the figure is drawn, not shown
    exec(compile(code, "docs/concepts/explanations.md", "exec"), {})


def test_bundle_holds_what_collaborators_read_and_is_deterministic(pipeline, tmp_path):
    import hashlib
    import zipfile

    exp, env, args = pipeline["exp"], pipeline["env"], pipeline["args"]
    proc = _make("all", "CONFIG=configs/demo.yaml", args, env=env)  # the run as configured (a test changed its title)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bundle = exp / "demo-report.zip"
    digests = []
    for _ in range(2):
        proc = _make("bundle", "CONFIG=configs/demo.yaml", args, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        digests.append(hashlib.sha256(bundle.read_bytes()).hexdigest())
        assert f"sha256 {digests[-1]}" in proc.stdout
    assert digests[0] == digests[1], "the same run must give the same bytes"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        readme = zf.read("README.txt").decode()
        assert zf.testzip() is None
    assert names == sorted(set(names) - {"README.txt"}) + ["README.txt"]
    for name in (
        "config.yaml",
        "report/index.html",
        "report/summary.json",
        "explain/resnet18/attributions.h5ad",
        "train_torch/resnet18/metrics.json",
        "train_torch/resnet18/per_class.csv",
        "explain/resnet18/gradient/top_genes.csv",
        "explain/resnet18/gradient/figures/class_maps.png",
        *(f"{stage}/manifest.json" for stage in STAGES),
    ):
        assert name in names, name
    assert not [n for n in names if n.endswith((".pt", ".npy", ".npz")) or "/tensorboard/" in n]
    for name in set(names) - {"README.txt"}:  # every file described, from the stages' declared outputs
        assert f"  {name}  (" in readme, name
    assert "(not declared by the stage)" not in readme
    # before the run has finished: one line, exit non-zero, no zip
    empty = {**env, "ONCOXAI_OUTPUTS": str(tmp_path / "outputs")}
    proc = _make("bundle", "CONFIG=configs/demo.yaml", args, env=empty)
    assert proc.returncode != 0 and "the run is not finished" in proc.stderr
    assert not list((tmp_path / "outputs").rglob("*.zip"))


def test_demo_report_and_index_in_a_real_browser(pipeline):
    """Headless Chromium, network blocked, opens the experiments' index and the demo report it links: no console
    error, no failed or outgoing request, every image decodes with alt text, fits a phone, prints; a screenshot."""
    from stages.report.experiments import write_index

    browser_or_skip()
    from stages.report.browser import check_pages

    exp = pipeline["exp"]
    index = write_index(exp.parent)
    assert 'href="demo/report/index.html"' in index.read_text()
    results = {r.page: r for r in check_pages(index)}
    report = (exp / "report" / "index.html").resolve()
    assert set(results) == {index.resolve(), report}
    for result in results.values():
        assert result.problems() == [], result.problems()
    page = results[report]
    assert page.n_images >= 30 and page.n_tables >= 10  # three models' figures, eight methods' maps and tables
    shot = (exp / "report" / "screenshot.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(shot[16:20], "big"), int.from_bytes(shot[20:24], "big")
    assert width == 1100 and height > 5000  # the full page, not the first screen


def test_explanations_are_checked_against_biology(pipeline):
    """Every method of the demo's model has the DE overlap, keep/remove and enrichment results in summary.json and
    the report; the .h5ad carries scanpy's own DE of the training split, which scanpy's tools read."""
    import anndata as ad
    import matplotlib
    import scanpy as sc

    matplotlib.use("Agg")
    exp = pipeline["exp"]

    def no_nan(constant):  # JSON has no NaN; a browser's JSON.parse rejects it
        raise AssertionError(f"summary.json holds {constant}")

    summary = json.loads((exp / "report" / "summary.json").read_text(), parse_constant=no_nan)
    methods = {
        "saliency",
        "gradient",
        "input_x_gradient",
        "smoothgrad",
        "integrated_gradients",
        "grad_cam",
        "guided_grad_cam",
        "occlusion",
    }
    assert set(summary["biology"]) == {"resnet18", "baselines"}
    assert set(summary["biology"]["resnet18"]) == methods
    assert set(summary["biology"]["baselines"]) == {"logistic_regression", "random_forest"}
    markers = pd.read_csv(exp.parent.parent / "data" / "markers.csv")
    marked = sorted(set(markers["class"]))
    for method in ("gradient", "integrated_gradients"):
        r = summary["biology"]["resnet18"][method]
        assert r["retraining"][0]["k"] == 10 and r["retraining"][0]["keep_beats_random"]
        assert not r["removal_costs_nothing"]
        for cls in marked:  # the planted set of each marked class comes out on top
            top = r["enrichment"][cls][0]
            assert top["gene_set"].startswith("PLANTED_") and top["p_adj"] < 1e-3, (method, cls, top)
    html = (exp / "report" / "index.html").read_text()
    assert "Do the explanations agree with biology?" in html and "keep and remove retraining curves" in html
    metrics = json.loads((exp / "explain" / "manifest.json").read_text())
    assert metrics["biology_seconds"] > 0

    adata = ad.read_h5ad(exp / "explain" / "resnet18" / "attributions.h5ad")
    assert {"rank_genes_groups", "rank_genes_groups_t-test", "biology"} <= set(adata.uns)
    # the DE in the file is scanpy's on the training split of the genes the model saw, recomputed here by hand
    samples = pd.read_csv(exp / "preprocess" / "samples.csv", dtype={"sample": str})
    train = ((samples["split"] == "train") & samples["augmented_from"].isna()).to_numpy()
    vectors = np.load(exp / "preprocess" / "vectors.npy")[train]
    genes = pd.read_csv(exp / "preprocess" / "genes.csv", dtype={"gene": str})["gene"].to_numpy()
    hand = ad.AnnData(
        X=vectors,
        obs=pd.DataFrame({"label": pd.Categorical(samples["label"][train])}, index=samples["sample"][train].to_numpy()),
        var=pd.DataFrame(index=genes),
    )
    sc.tl.rank_genes_groups(hand, "label", method="wilcoxon", use_raw=False, n_genes=len(genes), tie_correct=True)
    for cls in marked:
        ours = sc.get.rank_genes_groups_df(adata, group=cls).set_index("names")["scores"]
        want = sc.get.rank_genes_groups_df(hand, group=cls).set_index("names")["scores"]
        np.testing.assert_allclose(ours.reindex(genes).to_numpy(), want.reindex(genes).to_numpy(), rtol=1e-6)
    sc.pl.rank_genes_groups(adata, n_genes=10, show=False)  # the docs' line


def test_chunked_explanations_equal_the_one_shot_result(pipeline, tmp_path):
    """The demo's model explained in one chunk and in chunks of 16 samples (batches of 8): the same per-sample
    arrays, class maps, rankings, per-sample tables, trust figures and h5ad; float16 storage is the float32 result
    rounded; past per_sample.arrays_max_samples no per-sample arrays, the h5ad layers still complete."""
    check_chunked_explanations(pipeline["exp"], tmp_path)


def _without_seconds(entry):
    if isinstance(entry, dict):
        return {k: _without_seconds(v) for k, v in entry.items() if k != "seconds"}
    if isinstance(entry, list):
        return [_without_seconds(v) for v in entry]
    return entry


def check_chunked_explanations(exp, tmp_path):
    import anndata as ad
    import torch

    from stages.explain.__main__ import explain_model
    from stages.explain.params import Explain

    folder = exp / "train_torch" / "resnet18"
    base = {
        "methods": ["saliency", "smoothgrad"],
        "batch_size": 8,
        "smoothgrad": {"samples": 2},
        "faithfulness": {"max_samples": 8, "steps": 3},
        "sanity": {"max_samples": 4},
        "stability": {"enabled": False},
        "biology": {"enabled": False},
        "per_sample": {"figure_per_class": 1},
    }

    def run(out, **over):
        settings = Explain.model_validate({**base, **over})
        entry = explain_model("resnet18", folder, exp, out, settings, torch.device("cpu"), 0)
        return entry, out / "resnet18"

    one, a = run(tmp_path / "one", chunk_size=100_000)
    many, b = run(tmp_path / "many", chunk_size=16)
    n = one["n_explained"]
    assert n > 40  # several chunks
    assert _without_seconds(one) == _without_seconds(many)
    for m in base["methods"]:
        for f in ("attributions.npy", "sample_genes.npy"):
            x, y = np.load(a / m / f), np.load(b / m / f)
            assert x.shape[0] == n and x.dtype == np.float32 and np.array_equal(x, y), (m, f)
        np.testing.assert_allclose(
            np.load(a / m / "class_maps.npy"), np.load(b / m / "class_maps.npy"), rtol=1e-5, atol=1e-7
        )
        for f in ("gene_attributions.csv", "top_genes.csv", "sample_top_genes.csv", "faithfulness.csv", "sanity.csv"):
            pd.testing.assert_frame_equal(pd.read_csv(a / m / f), pd.read_csv(b / m / f), rtol=1e-5, obj=f"{m}/{f}")
    x, y = ad.read_h5ad(a / "attributions.h5ad"), ad.read_h5ad(b / "attributions.h5ad")
    assert x.n_obs == n and set(x.layers) == set(base["methods"])
    np.testing.assert_array_equal(x.X, y.X)
    for m in base["methods"]:
        np.testing.assert_array_equal(x.layers[m], y.layers[m])
        np.testing.assert_array_equal(x.layers[m], np.load(a / m / "sample_genes.npy"))
        np.testing.assert_allclose(x.varm[f"{m}_class_means"], y.varm[f"{m}_class_means"], rtol=1e-5, atol=1e-7)
    pd.testing.assert_frame_equal(x.obs, y.obs)

    light = {
        "methods": ["saliency"],
        "smoothgrad": {},
        "faithfulness": {"enabled": False},
        "sanity": {"enabled": False},
    }
    _, c = run(
        tmp_path / "half", chunk_size=16, attribution_dtype="float16", per_sample={"arrays_max_samples": n}, **light
    )
    saliency = np.load(c / "saliency" / "attributions.npy")
    assert saliency.dtype == np.float16
    np.testing.assert_array_equal(saliency, np.load(a / "saliency" / "attributions.npy").astype(np.float16))
    assert ad.read_h5ad(c / "attributions.h5ad").layers["saliency"].dtype == np.float16

    entry, d = run(tmp_path / "few", chunk_size=16, per_sample={"arrays_max_samples": n - 1}, **light)
    assert entry["per_sample_arrays"] is False
    assert not list(d.glob("*/attributions.npy")) and not list(d.glob("*/sample_genes.npy"))
    z = ad.read_h5ad(d / "attributions.h5ad")
    np.testing.assert_array_equal(z.layers["saliency"], x.layers["saliency"])
    pd.testing.assert_frame_equal(
        pd.read_csv(d / "saliency" / "sample_top_genes.csv"), pd.read_csv(a / "saliency" / "sample_top_genes.csv")
    )
    assert not list(tmp_path.rglob(".*.tmp"))  # nothing left half-written
