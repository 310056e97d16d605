"""The stage's image renderer against the map's definition (image = values @ weights.T)."""

import numpy as np
import pytest
import scipy.sparse as sp

from shared.genemap import PixelGeneMap
from stages.preprocess.render import MapRenderer, to_uint8


def _maps(rng):
    genes = np.array([f"g{i}" for i in range(300)])
    one_each = PixelGeneMap.from_assignment(rng.permutation(400)[:300], (1, 20, 20), genes)  # lsa-like
    crowded = PixelGeneMap.from_assignment(rng.integers(0, 100, 300), (1, 10, 10), genes)  # bin-like: shared
    # three channels, unequal weights (not a mean): every pixel kind, weights that are not 1
    rows = np.concatenate([rng.integers(0, 3 * 64, 300), rng.integers(0, 3 * 64, 150)])
    cols = np.concatenate([np.arange(300), rng.integers(0, 300, 150)])
    w = sp.csr_matrix((rng.uniform(0.1, 1.0, len(rows)), (rows, cols)), shape=(3 * 64, 300))
    w.sum_duplicates()
    weighted = PixelGeneMap(w, (3, 8, 8), genes)
    return {"one_each": one_each, "crowded": crowded, "weighted": weighted}


@pytest.mark.parametrize("name", ["one_each", "crowded", "weighted"])
def test_renderer_reproduces_the_map_definition(name):
    rng = np.random.default_rng(1)
    gmap = _maps(rng)[name]
    values = rng.random((57, 300), dtype=np.float32)
    values[:, :7] = [0.0, 1.0, 0.5 / 255, 1.5 / 255, 1.2, -0.3, 254.5 / 255]  # edges, halves, out of range
    reference = gmap.render(values)
    renderer = MapRenderer(gmap)
    images = renderer(values)
    assert images.shape == reference.shape == (57, *gmap.image_shape) and images.dtype == np.float32
    np.testing.assert_allclose(images, reference, rtol=1e-6, atol=1e-7)
    assert np.all(images.reshape(57, -1)[:, np.diff(gmap.weights.indptr) == 0] == 0)  # empty pixels are black
    quantised = renderer(values, np.uint8)
    assert quantised.dtype == np.uint8
    # the same quantisation as the two-pass path; a sum of several genes may differ in its last float bit
    diff = np.abs(quantised.astype(int) - to_uint8(reference).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_to_uint8_rounds_halves_up_and_clips():
    x = np.array([-0.1, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.7], dtype=np.float32)
    assert to_uint8(x).tolist() == [0, 0, 1, 2, 128, 255, 255]


def test_renderer_rejects_the_wrong_gene_count_and_dtype():
    gmap = _maps(np.random.default_rng(0))["one_each"]
    renderer = MapRenderer(gmap)
    with pytest.raises(ValueError, match="300 genes"):
        renderer(np.zeros((2, 299), np.float32))
    with pytest.raises(ValueError, match="float32 or uint8"):
        renderer(np.zeros((2, 300), np.float32), np.float64)


def test_a_sample_image_does_not_depend_on_the_batch():
    gmap = _maps(np.random.default_rng(2))["crowded"]
    values = np.random.default_rng(3).random((40, 300), dtype=np.float32)
    renderer = MapRenderer(gmap)
    together = renderer(values, np.uint8)
    alone = np.stack([renderer(values[i : i + 1], np.uint8)[0] for i in range(40)])
    assert np.array_equal(together, alone)


def test_a_refitted_transform_renders_with_its_new_map():
    from stages.preprocess.transforms.base import MapTransform

    maps = _maps(np.random.default_rng(4))
    values = np.random.default_rng(5).random((3, 300), dtype=np.float32)
    transform = MapTransform(None)
    for name in ("crowded", "one_each"):  # a new map, even of another shape, replaces the renderer
        transform.gene_map = maps[name]
        np.testing.assert_allclose(transform.transform(values), maps[name].render(values), rtol=1e-6, atol=1e-7)
    second = PixelGeneMap.from_assignment(
        np.random.default_rng(6).permutation(400)[:300], (1, 20, 20), maps["one_each"].genes
    )  # same shape, other placement
    transform.gene_map = second
    np.testing.assert_allclose(transform.transform(values), second.render(values), rtol=1e-6, atol=1e-7)
