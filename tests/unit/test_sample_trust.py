"""The per-sample trust signals (stages/explain/sample_trust.py) against planted cases: a sample far from every
training sample is out of distribution and one among them is not; the neighbours' majority; the fold models' top-k
overlap; the reasons; and the obs columns added to an .h5ad after it was begun, read back by anndata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from stages.explain.params import Explain
from stages.explain.sample_trust import (
    AMBIGUOUS_SET,
    EMPTY_SET,
    FOLDS_DISAGREE,
    NEIGHBOURS_DISAGREE,
    OOD,
    UNFAITHFUL,
    TrainingNeighbours,
    agreement_p,
    choose_method,
    fold_top_k_shared,
    neighbours_agree,
    reasons,
)


def _training(seed: int = 0, n: int = 300, genes: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 0.1, size=(n, genes))


def test_the_ood_threshold_is_the_quantile_of_the_training_leave_one_out_distances():
    train = _training()
    index = TrainingNeighbours(train, 0.99)
    d = cdist(train, train)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(index.loo, d.min(1))
    assert index.threshold == pytest.approx(np.quantile(d.min(1), 0.99))


def test_a_sample_far_from_every_training_sample_is_flagged_and_one_among_them_is_not():
    train = _training()
    index = TrainingNeighbours(train, 0.99)
    rng = np.random.default_rng(1)
    far = np.full((1, 20), 2.0)  # 1.5 above the mean in every gene: 15 sd
    inside = train[7:8] + rng.normal(0, 0.01, size=(1, 20))
    dist, idx = index.query(np.vstack([far, inside]), 3)
    assert index.out_of_distribution(dist[:, 0]).tolist() == [True, False]
    assert idx[1, 0] == 7 and dist[1, 0] < 0.1  # its nearest training sample is the one it was planted beside
    assert (np.diff(dist, axis=1) >= 0).all()  # nearest first
    # fresh draws from the training distribution: flagged about 1% of the time, as the rule says
    fresh = rng.normal(0.5, 0.1, size=(2000, 20))
    rate = index.out_of_distribution(index.query(fresh, 1)[0][:, 0]).mean()
    assert rate < 0.05


def test_the_neighbours_agree_only_with_a_strict_majority_for_the_prediction():
    labels = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 2], [2, 2, 2]])
    assert neighbours_agree(labels, np.array([1, 1, 0, 2])).tolist() == [True, False, False, True]
    assert neighbours_agree(np.array([[0, 1, 0, 1]]), np.array([0])).tolist() == [False]  # a tie is no majority


def test_fold_top_k_overlap_is_the_mean_over_pairs_of_the_shared_fraction():
    rng = np.random.default_rng(0)
    a = rng.random((4, 30))
    assert fold_top_k_shared([a, a.copy(), a.copy()], 5).tolist() == [1.0] * 4
    # b: a's top 5 moved below everything, so none shared; c: two of a's top 4 kept on top
    b = a.copy()
    top = np.argsort(-a, axis=1)[:, :5]
    np.put_along_axis(b, top, -1.0, axis=1)
    assert fold_top_k_shared([a, b], 5).tolist() == [0.0] * 4
    c = a.copy()
    np.put_along_axis(c, top[:, 2:4], -1.0, axis=1)
    assert fold_top_k_shared([a, c], 4).tolist() == [0.5] * 4
    # three models: pairs (a, a) 1, (a, b) 0, (a, b) 0
    np.testing.assert_allclose(fold_top_k_shared([a, a.copy(), b], 5), [1 / 3] * 4)
    assert np.isnan(fold_top_k_shared([a], 5)).all()  # one model: nothing to compare


def test_fold_agreement_is_judged_against_random_gene_lists():
    """Two random 10-gene lists out of 256 share 0.39 genes on average: sharing 1 of 10 is what chance gives, 3 of
    10 is not; over three models' three pairs the counts add up."""
    from scipy.stats import hypergeom

    p = agreement_p(np.array([0.1, 0.3, 1.0, np.nan]), 10, 256, 2)
    assert p[0] == pytest.approx(hypergeom.sf(0, 256, 10, 10)) and p[0] > 0.05
    assert p[1] == pytest.approx(hypergeom.sf(2, 256, 10, 10)) and p[1] < 0.01
    assert p[2] < 1e-15 and np.isnan(p[3])
    # three models: a mean of 0.2 shared is 6 genes over three pairs
    rng = np.random.default_rng(0)
    draws = hypergeom.rvs(256, 10, 10, size=(200_000, 3), random_state=rng).sum(1)
    assert agreement_p(np.array([0.2]), 10, 256, 3)[0] == pytest.approx((draws >= 6).mean(), abs=0.002)


def test_reasons_name_each_planted_signal_and_a_signal_not_computed_is_none():
    na = pd.NA
    table = pd.DataFrame(
        {
            "conformal_set_size": pd.array([1, 0, 2, 1, 1, na, 1], dtype="Int64"),
            "fold_agreement_p": [0.001, 0.001, 0.001, 0.3, np.nan, 0.001, 0.001],
            "map_beats_random": pd.array([True, True, True, True, False, na, True], dtype="boolean"),
            "ood": pd.array([False, False, False, False, False, True, na], dtype="boolean"),
            "neighbours_agree": pd.array([True, True, True, True, True, False, na], dtype="boolean"),
        }
    )
    assert reasons(table, 0.05).tolist() == [
        "",
        EMPTY_SET,
        AMBIGUOUS_SET,
        FOLDS_DISAGREE,
        UNFAITHFUL,
        f"{OOD}; {NEIGHBOURS_DISAGREE}",
        "",
    ]


def test_the_trust_method_defaults_to_the_first_gradient_method_and_must_be_run():
    from pydantic import ValidationError

    settings = Explain.model_validate({"methods": ["occlusion", "integrated_gradients", "saliency"]})
    assert choose_method(settings, ["occlusion", "integrated_gradients", "saliency"]) == "integrated_gradients"
    assert choose_method(settings, ["occlusion"]) == "occlusion"
    chosen = Explain.model_validate({"methods": ["saliency", "gradient"], "per_sample": {"trust_method": "gradient"}})
    assert choose_method(chosen, ["saliency", "gradient"]) == "gradient"
    with pytest.raises(ValidationError, match="per_sample.trust_method"):
        Explain.model_validate({"methods": ["saliency"], "per_sample": {"trust_method": "gradient"}})


def test_obs_columns_added_after_the_start_read_back_in_anndata(tmp_path):
    import anndata as ad

    from stages.explain.store import AnnDataFile

    names = pd.Index(["s0", "s1", "s2"], name="sample")
    obs = pd.DataFrame({"label": pd.Categorical(["a", "b", "a"])}, index=names)
    f = AnnDataFile(tmp_path / "x.h5ad", obs, pd.DataFrame(index=pd.Index(["g0", "g1"], name="gene")))
    f.dense("X", np.float32).write(np.zeros((3, 2), np.float32))
    added = pd.DataFrame(
        {
            "distrust": ["", OOD, f"{EMPTY_SET}; {OOD}"],
            "fold_top_k_shared": [0.5, np.nan, 1.0],
            "ood": pd.array([False, True, pd.NA], dtype="boolean"),
            "conformal_set_size": pd.array([1, 0, pd.NA], dtype="Int64"),
        },
        index=names,
    )
    f.add_obs(added)
    with pytest.raises(ValueError, match="other samples"):
        f.add_obs(added.iloc[::-1])
    f.finish({"uns": {"classes": ["a", "b"]}})
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    assert list(back.obs.columns) == ["label", "distrust", "fold_top_k_shared", "ood", "conformal_set_size"]
    assert back.obs["label"].tolist() == ["a", "b", "a"]
    assert back.obs["distrust"].tolist() == added["distrust"].tolist()
    np.testing.assert_array_equal(back.obs["fold_top_k_shared"].to_numpy(), [0.5, np.nan, 1.0])
    assert back.obs["ood"].tolist()[:2] == [False, True] and back.obs["ood"].isna().tolist() == [False, False, True]
    assert back.obs["conformal_set_size"].isna().tolist() == [False, False, True]
