"""The layout-sensitivity check's statistics (shared.evaluation.layout_sensitivity), its config errors and the
preprocess pieces that need no stage run: a ranking kept under another layout is robust, a class whose genes are
reshuffled is marked, and only that class; the planted markers' precision follows the ranking; a transform without a
seeded layout is refused with the key named."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from shared import config
from shared.errors import UserError
from shared.evaluation.layout_sensitivity import assess, compare, top_k_agreement

from ..support import write_config

CLASSES = ["a", "b", "c"]
N_GENES, K = 200, 10


def _main(rng) -> np.ndarray:
    """Class means with 10 planted genes per class on top (genes 0-9 for a, 10-19 for b, 20-29 for c)."""
    means = rng.random((3, N_GENES))
    for c in range(3):
        means[c, 10 * c : 10 * c + 10] += 5 + rng.random(10)
    return means


def test_top_k_agreement_of_the_same_reversed_and_absent_rankings():
    a = np.arange(50, dtype=float)
    assert top_k_agreement(a, a.copy(), 10) == (pytest.approx(1.0), 1.0)
    rho, overlap = top_k_agreement(a, a[::-1].copy(), 10)
    assert rho == pytest.approx(-1.0) and overlap == 0.0
    rho, overlap = top_k_agreement(a, np.full(50, np.nan), 10)
    assert np.isnan(rho) and np.isnan(overlap)


def test_a_reshuffled_class_is_marked_and_a_kept_one_is_not():
    rng = np.random.default_rng(0)
    main = _main(rng)
    genes = np.array([f"g{i}" for i in range(N_GENES)])
    markers = {c: {f"g{i}" for i in range(10 * k, 10 * k + 10)} for k, c in enumerate(CLASSES)}
    layouts = {}
    for name in ("seed1", "seed2", "umap"):
        other = main + 0.3 * rng.random(main.shape)  # the planted genes stay on top ...
        other[1] = rng.permutation(other[1])  # ... except class b's, scattered by this layout
        layouts[name] = other
    control = main + 0.3 * rng.random(main.shape)
    result = assess(main, control, layouts, CLASSES, K, 0.5, genes, markers, K)
    assert result["not_robust"] == ["b"], result["per_class"]
    a, b = result["per_class"]["a"], result["per_class"]["b"]
    assert a["robust"] and a["median_top_k_overlap"] == 1.0 and a["median_spearman"] > 0.9
    assert not b["robust"] and b["median_top_k_overlap"] < 0.5 and abs(b["median_spearman"]) < 0.3
    assert b["control_top_k_overlap"] == 1.0  # the same layout keeps b's genes: the layout moved them
    assert result["main"]["marker_precision"] == 1.0
    for entry in result["layouts"].values():
        assert entry["per_class_precision"]["a"] == 1.0 and entry["per_class_precision"]["b"] < 0.5
        assert entry["per_class"]["c"]["top_k_overlap"] == 1.0
    assert result["control"]["marker_precision"] == 1.0


def test_the_threshold_is_inclusive_and_the_median_decides():
    rng = np.random.default_rng(1)
    main = _main(rng)

    def keeping(n_kept: int) -> np.ndarray:
        """Class a's top 10 genes with n_kept of them still on top."""
        other = main.copy()
        other[0, n_kept:10] = -1.0
        return other

    # overlaps 0.5, 0.5, 0.0: median 0.5 at threshold 0.5 is robust, above it is not
    layouts = {"x": keeping(5), "y": keeping(5), "z": keeping(0)}
    assert assess(main, None, layouts, CLASSES, K, 0.5)["per_class"]["a"]["robust"]
    assert assess(main, None, layouts, CLASSES, K, 0.6)["not_robust"] == ["a"]
    assert assess(main, None, layouts, CLASSES, K, 0.5)["control"] is None


def test_a_class_absent_from_the_explained_samples_is_left_out():
    rng = np.random.default_rng(2)
    main = _main(rng)
    main[2] = np.nan
    result = compare(main, main + 0.01, CLASSES, K)
    assert set(result["per_class"]) == {"a", "b"} and result["top_k_overlap"] == 1.0


def _load(tmp_path, small_data, preprocess: dict):
    path = write_config(tmp_path / "c.yaml", small_data, stages=("preprocess",))
    raw = yaml.safe_load(path.read_text())
    raw["preprocess"].update(preprocess)
    path.write_text(yaml.safe_dump(raw))
    return config.load(path, [])


@pytest.mark.parametrize(
    "preprocess, match",
    [
        ({"transform": "fotomics", "layout_sensitivity": {"layouts": 2}}, "does not depend on the seed"),
        ({"transform": "vector", "layout_sensitivity": {"layouts": 1}}, "makes no images"),
        ({"transform": "multichannel", "layout_sensitivity": {"embedding": "umap"}}, "deepinsight only"),
        ({"layout_sensitivity": {"embedding": "pca"}}, "is preprocess.deepinsight.embedding already"),
    ],
)
def test_a_transform_without_a_seeded_layout_is_refused_naming_the_key(tmp_path, small_data, preprocess, match):
    with pytest.raises(UserError, match="preprocess.layout_sensitivity") as err:
        _load(tmp_path, small_data, preprocess)
    assert match in str(err.value) and "\n" not in str(err.value)


def test_layouts_are_named_by_seed_and_embedding_and_moved_genes_counted(tmp_path, small_data):
    from shared.genemap import PixelGeneMap
    from stages.preprocess.layouts import genes_moved, variant_settings

    exp = _load(tmp_path, small_data, {"layout_sensitivity": {"layouts": 2, "embedding": "tsne"}})
    variants = variant_settings(exp.section("preprocess"), 5)
    assert list(variants) == ["seed6", "seed7", "tsne"]
    assert variants["tsne"][0].deepinsight.embedding == "tsne" and variants["tsne"][1] == 5
    assert variants["seed6"][0].deepinsight.embedding == "pca"
    assert not _load(tmp_path, small_data, {}).section("preprocess").layout_sensitivity.enabled

    genes = np.array(["g0", "g1", "g2", "g3"])
    main = PixelGeneMap.from_assignment(np.array([0, 1, 2, 3]), (1, 2, 2), genes)
    assert genes_moved(main, main) == 0.0
    swapped = PixelGeneMap.from_assignment(np.array([1, 0, 2, 3]), (1, 2, 2), genes)
    assert genes_moved(main, swapped) == 0.5
