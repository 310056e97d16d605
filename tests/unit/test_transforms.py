"""The image transforms: their pixel->gene maps are exact, fitted on training values only, and applied to each new
sample on its own; layouts work for any image size; gene-grid's order is seeded; sample-spot is the published
transductive image."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from shared.errors import UserError
from stages.preprocess.params import Preprocess
from stages.preprocess.transforms import TRANSFORMS, build_transform
from stages.preprocess.transforms.fotomics import fourier_coordinates
from stages.preprocess.transforms.gene_grid import grid_side
from stages.preprocess.transforms.layout import discretize, fit_to_grid, quantile_bins


def _values(n=60, g=50, seed=0):
    """Training-like values in [0, 1] with some gene-gene structure (a few latent factors plus noise)."""
    rng = np.random.default_rng(seed)
    latent = rng.random((n, 4)) @ rng.random((4, g))
    x = latent / latent.max() * 0.7 + 0.3 * rng.random((n, g))
    return x.astype(np.float32)


def _genes(g):
    return np.array([f"g{i}" for i in range(g)])


def _fitted(transform, values=None, height=8, width=8, seed=0, **sections):
    values = _values() if values is None else values
    t = build_transform(Preprocess(transform=transform, height=height, width=width, **sections))
    t.fit(values, _genes(values.shape[1]), seed)
    return t


# every map transform, with cheap embeddings (pca/kpca), under an id
MAP_CASES = {
    "deepinsight-bin": ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "bin"}}),
    "deepinsight-qtb": ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "qtb"}}),
    "deepinsight-lsa": ("deepinsight", {"deepinsight": {"embedding": "kpca", "discretization": "lsa"}}),
    "multichannel-lsa": ("multichannel", {"multichannel": {"embeddings": ["pca", "kpca", "pca"]}}),
    "multichannel-qtb": (
        "multichannel",
        {"multichannel": {"embeddings": ["pca", "kpca", "pca"], "discretization": "qtb"}},
    ),
    "gene-grid-permutation": ("gene-grid", {}),
    "gene-grid-pca": ("gene-grid", {"gene_grid": {"order": "embedding", "embedding": "pca"}}),
    "gene-grid-spectral": ("gene-grid", {"gene_grid": {"order": "embedding", "embedding": "spectral"}}),
    "fotomics-bin": ("fotomics", {"fotomics": {"discretization": "bin"}}),
    "fotomics-qtb": ("fotomics", {"fotomics": {"discretization": "qtb"}}),
    "fotomics-lsa": ("fotomics", {}),
}


def test_every_configurable_transform_is_registered():
    names = set(typing.get_args(Preprocess.model_fields["transform"].annotation))
    assert names == set(TRANSFORMS)
    assert TRANSFORMS["sample-spot"].transductive and not TRANSFORMS["fotomics"].transductive


# -- exactness of the maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MAP_CASES)
def test_pixel_is_the_weighted_sum_of_its_genes(case):
    """For every pixel: value == sum(weight * gene value) over the genes the map lists for it; weights of a
    non-empty pixel sum to 1 (a shared pixel holds the mean); images are float32 in [0, 1]."""
    name, sections = MAP_CASES[case]
    t = _fitted(name, **sections)
    new = _values(7, 50, seed=1)
    images = t.transform(new)
    assert images.dtype == np.float32 and images.shape == (7, *t.image_shape)
    assert images.min() >= 0 and images.max() <= 1 + 1e-6
    w = t.gene_map.weights.tocoo()
    expected = np.zeros((7, t.gene_map.n_pixels))
    for p, g, weight in zip(w.row, w.col, w.data, strict=False):
        expected[:, p] += weight * new[:, g]
    np.testing.assert_allclose(images.reshape(7, -1), expected, rtol=1e-5, atol=1e-7)
    row_sums = np.asarray(t.gene_map.weights.sum(axis=1)).ravel()
    np.testing.assert_allclose(row_sums[row_sums > 0], 1.0)


@pytest.mark.parametrize(
    "name,sections",
    [
        ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "lsa"}}),
        ("fotomics", {"fotomics": {"discretization": "lsa"}}),
        ("multichannel", {"multichannel": {"embeddings": ["pca", "kpca", "pca"], "discretization": "lsa"}}),
    ],
)
@pytest.mark.parametrize("height,width", [(8, 8), (6, 9), (9, 6)])
def test_lsa_gives_one_gene_per_pixel(name, sections, height, width):
    t = _fitted(name, height=height, width=width, **sections)  # 50 genes on 54 or 64 pixels
    per_pixel = t.gene_map.genes_per_pixel()
    assert per_pixel.shape == (t.image_shape[0], height, width)
    for channel in per_pixel:  # every gene exactly once in each channel, never two genes on a pixel
        assert channel.max() == 1 and channel.sum() == 50
    # each gene on exactly one pixel per channel
    assert (np.diff(t.gene_map.weights.tocsc().indptr) == t.image_shape[0]).all()


def test_lsa_refuses_more_genes_than_pixels_naming_the_key():
    with pytest.raises(UserError, match="preprocess.fotomics.discretization: lsa needs n_genes"):
        _fitted("fotomics", height=6, width=6)
    with pytest.raises(UserError, match="preprocess.multichannel.discretization"):
        _fitted("multichannel", height=6, width=6, multichannel={"embeddings": ["pca", "pca", "pca"]})


# -- protocol: fitted on training values only, each sample on its own ---------------------------------------


@pytest.mark.parametrize("case", MAP_CASES)
def test_a_new_sample_image_depends_on_its_own_values_only(case):
    name, sections = MAP_CASES[case]
    t = _fitted(name, **sections)
    new = _values(9, 50, seed=2)
    together = t.transform(new)
    alone = np.concatenate([t.transform(new[i : i + 1]) for i in range(len(new))])
    np.testing.assert_array_equal(together, alone)
    others = new.copy()
    others[1:] = np.random.default_rng(3).random((8, 50))
    np.testing.assert_array_equal(t.transform(others)[0], together[0])


@pytest.mark.parametrize("case", MAP_CASES)
def test_the_fit_depends_only_on_the_training_values_and_seed(case):
    name, sections = MAP_CASES[case]
    train = _values(60, 50, seed=0)
    kept = train.copy()
    a = _fitted(name, train, **sections)
    np.testing.assert_array_equal(train, kept)  # the fit does not alter its input
    # refitted in a fresh transform on the same training values and seed: the very same map ...
    b = _fitted(name, train.copy(), **sections)
    assert (a.gene_map.weights != b.gene_map.weights).nnz == 0
    assert a.gene_map.image_shape == b.gene_map.image_shape and list(a.gene_map.genes) == list(b.gene_map.genes)
    # ... so any test values, whatever the other test values are, give identical images
    for seed in (4, 5):
        test = _values(5, 50, seed=seed)
        np.testing.assert_array_equal(a.transform(test), b.transform(test))
    # and different training values give a different fit (the fit does read them)
    if name != "gene-grid" or sections:
        c = _fitted(name, _values(60, 50, seed=9), **sections)
        assert (a.gene_map.weights != c.gene_map.weights).nnz > 0


# -- layouts of any size; quantile binning -------------------------------------------------------------------


def test_quantile_bins_are_equally_filled():
    v = np.random.default_rng(0).standard_cauchy(240)  # heavy tails: equal-width bins would be nearly empty
    for n_bins in (6, 20, 7):
        counts = np.bincount(quantile_bins(v, n_bins), minlength=n_bins)
        assert counts.sum() == 240 and counts.max() - counts.min() <= 1
    assert (np.diff(quantile_bins(v, 6)[np.argsort(v)]) >= 0).all()  # monotone in the value


@pytest.mark.parametrize("height,width", [(6, 20), (20, 6), (8, 8)])
def test_qtb_spreads_genes_evenly_over_rows_and_columns(height, width):
    values = _values(60, 240)
    for name, sections in [
        ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "qtb"}}),
        ("fotomics", {"fotomics": {"discretization": "qtb"}}),
    ]:
        t = _fitted(name, values, height, width, **sections)
        per_pixel = t.gene_map.genes_per_pixel()[0]
        rows, cols = per_pixel.sum(axis=1), per_pixel.sum(axis=0)
        assert rows.sum() == 240
        # 240 / height genes per row and 240 / width per column, give or take genes tied on a coordinate (they
        # share a bin; fotomics' mirrored frequencies k and -k tie on the real-part axis)
        ties = [np.unique(t.coords[:, axis], return_counts=True)[1].max() for axis in (0, 1)]
        assert rows.max() - rows.min() <= ties[0], rows
        assert cols.max() - cols.min() <= ties[1], cols
        if name == "deepinsight":
            assert ties == [1, 1] and rows.max() - rows.min() <= 1 and cols.max() - cols.min() <= 1
    # bin on the same coordinates is far from even: the quantile cut is what spreads them
    rc = fit_to_grid(np.random.default_rng(1).standard_cauchy((240, 2)), height, width)
    binned = np.bincount(discretize(rc, height, width, "bin") // width, minlength=height)
    assert binned.max() - binned.min() > 1


@pytest.mark.parametrize(
    "name,sections",
    [
        ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "bin"}}),
        ("deepinsight", {"deepinsight": {"embedding": "kpca", "discretization": "lsa"}}),
        ("deepinsight", {"deepinsight": {"embedding": "pca", "discretization": "qtb"}}),
        ("fotomics", {"fotomics": {"discretization": "bin"}}),
        ("fotomics", {"fotomics": {"discretization": "lsa"}}),
        ("fotomics", {"fotomics": {"discretization": "qtb"}}),
    ],
)
@pytest.mark.parametrize("height,width", [(6, 20), (20, 6)])
def test_non_square_images_work_and_use_the_whole_grid(name, sections, height, width):
    values = _values(60, 100)
    t = _fitted(name, values, height, width, **sections)
    assert t.image_shape == (1, height, width)
    assert t.transform(values[:2]).shape == (2, 1, height, width)
    assert t.coords.shape == (100, 2)
    assert t.coords[:, 0].min() == pytest.approx(0) and t.coords[:, 0].max() == pytest.approx(height - 1)
    assert t.coords[:, 1].min() == pytest.approx(0) and t.coords[:, 1].max() == pytest.approx(width - 1)
    per_pixel = t.gene_map.genes_per_pixel()[0]
    assert per_pixel.sum() == 100
    assert per_pixel[0].any() and per_pixel[-1].any() and per_pixel[:, 0].any() and per_pixel[:, -1].any()


# -- gene-grid ---------------------------------------------------------------------------------------------------


def _pixel_of_gene(gmap):
    csc = gmap.weights.tocsc()
    return {g: csc.indices[csc.indptr[g]] for g in range(csc.shape[1]) if csc.indptr[g + 1] > csc.indptr[g]}


def test_gene_grid_keeps_the_most_variable_n_squared_genes_on_an_n_by_n_image():
    values = _values(60, 50)
    t = _fitted("gene-grid", values, height=32, width=32)  # height/width do not apply
    assert grid_side(50) == 7 and t.image_shape == (1, 7, 7)
    var = values.var(axis=0)
    on_grid = sorted(_pixel_of_gene(t.gene_map))
    assert on_grid == sorted(np.argsort(-var, kind="stable")[:49])
    assert t.gene_map.genes_per_pixel().max() == 1 and t.gene_map.genes_per_pixel().sum() == 49
    assert grid_side(64) == 8 and grid_side(63) == 7 and grid_side(4) == 2


def test_gene_grid_round_trip_recovers_each_kept_gene_exactly():
    t = _fitted("gene-grid", _values(60, 50))
    new = _values(6, 50, seed=7)
    flat = t.transform(new).reshape(6, -1)
    for g, p in _pixel_of_gene(t.gene_map).items():
        np.testing.assert_array_equal(flat[:, p], new[:, g])  # exact: each pixel is one gene, weight 1
    np.testing.assert_allclose(
        t.gene_map.gene_attributions(t.transform(new), new)[:, t.kept], new[:, t.kept], rtol=1e-6
    )


def test_gene_grid_permutation_is_seeded():
    values = _values(60, 50)
    a, b, c = (_fitted("gene-grid", values, seed=s) for s in (0, 0, 1))
    assert (a.gene_map.weights != b.gene_map.weights).nnz == 0
    np.testing.assert_array_equal(a.kept, b.kept)
    assert set(a.kept) == set(c.kept) and not np.array_equal(a.kept, c.kept)  # same genes, another order


def test_gene_grid_embedding_order_follows_the_first_principal_component():
    from sklearn.decomposition import PCA

    values = _values(60, 50)
    t = _fitted("gene-grid", values, gene_grid={"order": "embedding", "embedding": "pca"})
    pc1 = PCA(n_components=1, random_state=0).fit_transform(values[:, t.kept].T)[:, 0]
    assert (np.diff(pc1) >= 0).all()  # pixels in row-major order follow PC 1
    pixel = _pixel_of_gene(t.gene_map)
    assert [pixel[g] for g in t.kept] == list(range(49))


# -- fotomics ------------------------------------------------------------------------------------------------------


def test_fotomics_coordinates_follow_the_published_recipe():
    """Against a literal transcription of the reference FftTransformer.fft_fit loop."""
    values = _values(30, 40).astype(np.float64)

    def clean(part):
        q1, q3 = np.percentile(sorted(part), [10, 90])
        lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        return np.array([0.0 if (v <= lo or v >= hi) else v for v in part])

    real, imag = [], []
    for x in values:
        ft = np.fft.fftshift(np.fft.fft(x))
        real.append(clean(ft.real))
        imag.append(clean(ft.imag))
    expected = np.column_stack([np.mean(real, axis=0), np.mean(imag, axis=0)])
    np.testing.assert_allclose(fourier_coordinates(values), expected, atol=1e-10)
    np.testing.assert_allclose(fourier_coordinates(values, chunk=7), expected, atol=1e-10)  # chunking is exact
    np.testing.assert_allclose(fourier_coordinates(values[::-1]), expected, atol=1e-10)  # row order irrelevant
    plain = fourier_coordinates(values, outliers=False)
    np.testing.assert_allclose(plain[:, 0] + 1j * plain[:, 1], np.fft.fftshift(np.fft.fft(values.mean(0))), atol=1e-10)


# -- one small t-SNE check (the slow embeddings) ----------------------------------------------------------------


def test_multichannel_with_tsne_puts_each_embedding_in_its_own_channel():
    values = _values(40, 30)
    t = _fitted("multichannel", values, 6, 6, multichannel={"embeddings": ["tsne", "pca", "kpca"]})
    assert t.image_shape == (3, 6, 6) and t.channel_coords.shape == (3, 30, 2)
    single = _fitted("deepinsight", values, 6, 6, deepinsight={"embedding": "pca", "discretization": "lsa"})
    per_channel = t.gene_map.weights.toarray().reshape(3, 36, 30)
    np.testing.assert_array_equal(per_channel[1], single.gene_map.weights.toarray())  # channel 1 is the pca layout


# -- sample-spot -----------------------------------------------------------------------------------------------


def _check_spot_images(t, images, n):
    assert images.shape == (n, 3, 128, 128) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    for img, (r, c), colour in zip(images, t.spots, t.colours, strict=False):
        square = img[:, r : r + 7, c : c + 7]
        assert square.shape == (3, 7, 7)  # wholly inside the image
        np.testing.assert_array_equal(square, np.broadcast_to(colour.astype(np.float32)[:, None, None], (3, 7, 7)))
        rest = img.copy()
        rest[:, r : r + 7, c : c + 7] = 0
        assert not rest.any()  # black everywhere else
        if colour.any():  # a lit square: the lit pixels are exactly that one 7 x 7 block
            lit_r, lit_c = np.nonzero(img.any(axis=0))
            assert (lit_r.min(), lit_r.max(), lit_c.min(), lit_c.max()) == (r, r + 6, c, c + 6)


def test_sample_spot_draws_one_square_per_sample_at_its_tsne_position(monkeypatch):
    """The image construction, on a stand-in embedding (the scanpy pipeline itself is the slow test below)."""
    from stages.preprocess.transforms import sample_spot

    rng = np.random.default_rng(0)
    emb = {"pca": rng.normal(size=(30, 5)), "umap": rng.normal(size=(30, 2)), "tsne": rng.normal(size=(30, 2)) * 9}
    seen = {}

    def fake(values, n_pcs, n_neighbors, seed):
        seen.update(n=len(values), n_pcs=n_pcs, n_neighbors=n_neighbors, seed=seed)
        return emb

    monkeypatch.setattr(sample_spot, "embed_samples", fake)
    t = build_transform(Preprocess(transform="sample-spot"))
    assert t.transductive and t.image_shape == (3, 128, 128) and t.gene_map is None
    with pytest.raises(NotImplementedError):
        t.transform(_values(3, 30))
    with pytest.raises(NotImplementedError):
        t.fit(_values(3, 30), _genes(30), 0)
    images = t.fit_transform_all(_values(30, 30), seed=3)
    assert seen == {"n": 30, "n_pcs": 50, "n_neighbors": 15, "seed": 3}
    _check_spot_images(t, images, 30)

    def unit(v):
        return (v - v.min()) / (v.max() - v.min())

    np.testing.assert_allclose(
        t.colours, np.column_stack([unit(emb["tsne"][:, 0]), unit(emb["pca"][:, 0]), unit(emb["umap"][:, 0])])
    )
    np.testing.assert_array_equal(t.spots[:, 1], np.rint(unit(emb["tsne"][:, 0]) * 121))  # x -> column
    np.testing.assert_array_equal(t.spots[:, 0], np.rint((1 - unit(emb["tsne"][:, 1])) * 121))  # y up -> row
    np.testing.assert_array_equal(t.render(np.arange(5, 9)), images[5:9])  # chunks render the same images
    assert t.describe()["transductive"] and not t.describe()["has_gene_map"]


@pytest.mark.slow
def test_sample_spot_scanpy_pipeline_is_seeded_and_covers_all_samples():
    """The real PCA -> neighbours -> UMAP / t-SNE over all samples (numba compiles UMAP on first use: ~10 s)."""
    values = _values(40, 30)
    t = build_transform(Preprocess(transform="sample-spot"))
    images = t.fit_transform_all(values, seed=0)
    _check_spot_images(t, images, 40)
    np.testing.assert_allclose(t.colours.min(axis=0), 0)
    np.testing.assert_allclose(t.colours.max(axis=0), 1)
    assert t.spots.min(axis=0).tolist() == [0, 0] and t.spots.max(axis=0).tolist() == [121, 121]
    again = build_transform(Preprocess(transform="sample-spot"))
    np.testing.assert_array_equal(again.fit_transform_all(values, seed=0), images)
    import sys

    # umap-learn was loaded without its Keras/TensorFlow part (which, with torchvision after it, crashes the process)
    assert sys.modules.get("keras") is None and sys.modules.get("tensorflow") is None
