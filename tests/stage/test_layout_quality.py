"""The default t-SNE layout (openTSNE) against the reference's (scikit-learn's Barnes-Hut t-SNE, what
pyDeepInsight runs) on a fixture-sized matrix: the issue's quality bar, and the same coordinates for the same seed.
Speed is measured by make bench (bench/layout.py), never asserted here."""

from __future__ import annotations

import numpy as np
import pytest

from bench.compare import realistic_matrix
from bench.layout import trust, unique_share
from stages.preprocess.transforms import layout


@pytest.fixture(scope="module")
def profiles():
    X, _ = realistic_matrix(300, 800, seed=3)
    return layout.training_profiles(X, 10**9, 0)


@pytest.fixture(scope="module")
def reference(profiles):
    coords = layout.embed_genes(profiles, "tsne_sklearn", 0)
    return coords, _scores(profiles, coords)


def _scores(profiles, coords, side=32) -> tuple[float, float]:
    pixels, _ = layout.layout_genes(coords, side, side, "bin")
    return trust(profiles, coords, 5, np.arange(len(profiles))), unique_share(pixels)


@pytest.mark.parametrize("gradient", ["auto", "fft"])  # Barnes-Hut below 10,000 genes; FFT (the large-n path)
def test_default_tsne_meets_the_quality_bar_of_the_reference(profiles, reference, monkeypatch, gradient):
    if gradient == "fft":
        monkeypatch.setitem(layout.OPENTSNE, "negative_gradient_method", "fft")
    coords = layout.embed_genes(profiles, "tsne", 0)
    (trust_ours, unique_ours), (trust_ref, unique_ref) = _scores(profiles, coords), reference[1]
    assert trust_ours >= trust_ref - 0.01, (trust_ours, trust_ref)
    assert unique_ours >= unique_ref, (unique_ours, unique_ref)
    # a layout, not noise: far better than random coordinates
    random = np.random.default_rng(0).normal(size=coords.shape)
    assert trust_ours > _scores(profiles, random)[0] + 0.03


def test_default_tsne_is_reproducible_and_differs_from_the_reference(profiles, reference):
    a = layout.embed_genes(profiles, "tsne", 0)
    np.testing.assert_array_equal(a, layout.embed_genes(profiles, "tsne", 0))
    assert a.shape == reference[0].shape and not np.allclose(a, reference[0])
