"""The pixel->gene map: saved and loaded exactly, renders images, and returns attributions to genes."""

from __future__ import annotations

import numpy as np
import pytest

from shared.genemap import PixelGeneMap
from stages.preprocess.transforms.deepinsight import discretize, fit_deepinsight, fit_to_grid


def _values(n=20, g=30, seed=0):
    return np.random.default_rng(seed).random((n, g)).astype(np.float32)


def test_save_load_round_trip(tmp_path):
    """Genes in no sorted order: a save or load that reorders names (or weights) without the other is caught."""
    genes = ["TP53", "EGFR", "ACTB", "SOX2", "CD44"]
    gmap = PixelGeneMap.from_assignment(np.array([0, 5, 5, 7, 3]), (1, 3, 3), genes)
    gmap.save(tmp_path / "m.npz")
    back = PixelGeneMap.load(tmp_path / "m.npz")
    assert back.image_shape == (1, 3, 3)
    assert list(back.genes) == genes
    assert (back.weights != gmap.weights).nnz == 0
    x = np.arange(1, 6, dtype=np.float32)[None]  # each gene its own value
    np.testing.assert_array_equal(back.render(x), gmap.render(x))
    assert back.render(x)[0, 0].ravel()[7] == x[0, genes.index("SOX2")]  # SOX2's pixel holds SOX2's value


def test_shared_pixel_holds_the_mean_and_its_weights_reproduce_it():
    gmap = PixelGeneMap.from_assignment(np.array([0, 5, 5, 7, 3]), (1, 3, 3), list("abcde"))
    x = np.array([[0.2, 0.4, 0.8, 1.0, 0.1]], dtype=np.float32)
    img = gmap.render(x)[0, 0].ravel()
    assert img[5] == pytest.approx(0.6)  # mean of genes b and c
    assert img[0] == pytest.approx(0.2) and img[7] == pytest.approx(1.0) and img[3] == pytest.approx(0.1)
    assert img[[1, 2, 4, 6, 8]].sum() == 0
    table = gmap.pixel_table()
    pixel5 = table[(table.row == 1) & (table.col == 2)]
    assert set(pixel5.gene) == {"b", "c"}
    assert (pixel5.weight * x[0, [1, 2]]).sum() == pytest.approx(img[5])


def test_gene_attributions_conserve_pixel_totals_and_split_by_contribution():
    gmap = PixelGeneMap.from_assignment(np.array([0, 5, 5, 7, 3]), (1, 3, 3), list("abcde"))
    x = np.array([[0.2, 0.1, 0.3, 1.0, 0.0]])
    attr = np.zeros((1, 1, 3, 3))
    attr[0, 0, 1, 2] = 2.0  # pixel 5, shared by b (0.1) and c (0.3)
    attr[0, 0, 1, 0] = 1.0  # pixel 3 holds gene e, whose value is 0
    genes = gmap.gene_attributions(attr, x)[0]
    assert genes[1] == pytest.approx(0.5) and genes[2] == pytest.approx(1.5)  # 1:3 as their contributions
    assert genes[4] == pytest.approx(1.0)  # a dark pixel still passes its attribution to its gene
    assert genes.sum() == pytest.approx(attr.sum())


def test_lsa_layout_round_trip_one_gene_per_pixel():
    values = _values(60, 40)
    gmap, _ = fit_deepinsight(values, [f"g{i}" for i in range(40)], 7, 8, "pca", "lsa", seed=0)
    per_pixel = gmap.genes_per_pixel()
    assert per_pixel.max() == 1 and per_pixel.sum() == 40
    images = gmap.render(values)
    flat = images.reshape(len(values), -1)
    pixel_of_gene = np.asarray(gmap.weights.argmax(axis=0)).ravel()
    np.testing.assert_allclose(flat[:, pixel_of_gene], values, rtol=1e-6)  # image -> genes recovers the values
    np.testing.assert_allclose(gmap.gene_attributions(images, values), values, rtol=1e-6)


def test_bin_layout_may_share_pixels_and_lsa_refuses_too_many_genes():
    rc = fit_to_grid(np.random.default_rng(0).normal(size=(50, 2)), 4, 4)
    assert np.bincount(discretize(rc, 4, 4, "bin"), minlength=16).max() > 1
    from shared.errors import UserError

    with pytest.raises(UserError, match="lsa needs n_genes"):
        discretize(rc, 4, 4, "lsa")


def test_non_square_grid_uses_every_row_and_column():
    rc = fit_to_grid(np.random.default_rng(0).normal(size=(200, 2)) * [5, 1], 6, 20)
    assert rc[:, 0].min() == pytest.approx(0) and rc[:, 0].max() == pytest.approx(5)
    assert rc[:, 1].min() == pytest.approx(0) and rc[:, 1].max() == pytest.approx(19)
