"""The shortcut audit's statistics (shared.evaluation.shortcuts): the cross-validated skill equals scikit-learn's
ridge on the same folds; a feature set that carries a planted batch more than the class is flagged, one that
carries the class and nothing else is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.evaluation.shortcuts import audit, cv_skill, target_kind, top_gene_columns


def _data(n=240, d=30, seed=0):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n, d)), rng.integers(0, 3, n)


def test_scores_equal_scikit_learns_ridge_on_the_same_folds():
    rng, X, y = _data()
    X[:, 0] += y
    got = cv_skill(X, y, "categorical", permutations=20)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    pred = cross_val_predict(make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)), X, y, cv=folds)
    assert got["score"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    # chance: the permuted targets' mean score, near 1 / 3 for three balanced-accuracy classes
    assert got["chance"] == pytest.approx(1 / 3, abs=0.05)
    assert got["skill"] == pytest.approx((got["score"] - got["chance"]) / (1 - got["chance"]))
    t = X[:, 1] + rng.normal(size=len(X))
    got = cv_skill(X, t, "continuous", permutations=20)
    pred = cross_val_predict(
        make_pipeline(StandardScaler(), Ridge(alpha=1.0)), X, t, cv=KFold(5, shuffle=True, random_state=0)
    )
    assert got["score"] == pytest.approx(r2_score(t, pred), abs=1e-9)
    assert got["p"] == pytest.approx(1 / 21)


def test_a_batch_carried_more_than_the_class_is_flagged_and_a_clean_set_is_not():
    rng, X, y = _data()
    batch = np.where(rng.random(len(y)) < np.where(y == 0, 0.8, 0.2), "b2", "b1")
    donors = rng.integers(0, 8, len(y)).astype(str)
    nuisances = pd.DataFrame({"batch": batch, "donor": donors, "total_counts": rng.lognormal(8, 0.5, len(y))})
    shortcut = X.copy()
    shortcut[:, :5] += 3.0 * (batch == "b2")[:, None]  # genes that read the batch, not the class
    flagged = audit(shortcut, y, nuisances, permutations=99)
    assert flagged["flags"] == ["batch"] and flagged["flagged"]
    assert flagged["nuisances"]["batch"]["skill"] > flagged["class"]["skill"]
    assert flagged["nuisances"]["batch"]["p"] == pytest.approx(0.01)
    assert flagged["nuisances"]["total_counts"]["kind"] == "continuous"
    clean = X.copy()
    clean[:, :5] += 2.0 * (y[:, None] == np.arange(3)[None, :]).repeat(2, 1)[:, :5]  # genes that read the class
    result = audit(clean, y, nuisances, permutations=99)
    assert not result["flagged"], result
    assert result["class"]["skill"] > 0.5 and result["class"]["p"] == pytest.approx(0.01)
    assert result["nuisances"]["donor"]["p"] > 0.05


def test_what_cannot_be_tested_is_skipped_with_its_reason():
    _, X, y = _data(n=30)
    one = cv_skill(X, np.array(["a"] * 29 + ["b"]), "categorical", permutations=5)
    assert one["skipped"] == "one value with two or more held-out rows (two are needed)"
    missing = cv_skill(X, pd.Series([""] * 27 + ["1.0", "2.0", "3.0"]), "continuous", permutations=5)
    assert "skipped" in missing and "3 held-out rows" in missing["skipped"]
    # a category of one row is left out, the rest is tested
    labels = np.array(["a", "b"] * 13 + ["c", "c", "c", "d"])
    kept = cv_skill(X, labels, "categorical", permutations=5)
    assert kept["n"] == 29 and kept["levels"] == 3


def test_target_kinds_and_top_gene_union():
    assert target_kind(pd.Series(["0", "1", "1", ""])) == "categorical"
    assert target_kind(pd.Series([str(v) for v in range(40)] + [""])) == "continuous"
    assert target_kind(pd.Series(["male", "female"] * 10)) == "categorical"
    means = np.array([[0.9, 0.1, 0.5, np.nan], [0.0, 0.2, 0.1, 0.8]])
    assert top_gene_columns(means, 2).tolist() == [0, 1, 2, 3]
    assert top_gene_columns(means, 1).tolist() == [0, 3]


def test_a_nuisance_that_only_travels_with_the_class_is_not_flagged():
    """Six classes in two families (a strong program each, weak markers within), and a batch holding most of one
    family: genes that read only the classes predict the batch better than the class itself, but no better once
    the batch is permuted within each class, so it is not flagged; genes of the batch's own are, and it is."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 480)
    family = y < 3
    batch = np.where(rng.random(len(y)) < np.where(family, 0.97, 0.03), "b2", "b1")
    X = rng.normal(size=(len(y), 12))
    X[:, 0] += 2.0 * family
    X[:, 1] += 2.0 * ~family
    X[:, 2:8] += 0.5 * (y[:, None] == np.arange(6)[None, :])  # weak markers of each class, nothing of the batch
    result = audit(X, y, pd.DataFrame({"batch": batch}), permutations=99)
    carried = result["nuisances"]["batch"]
    assert carried["p"] == pytest.approx(0.01) and carried["skill"] > result["class"]["skill"]  # marginally: yes
    assert carried["p_within_class"] > 0.05 and not result["flagged"], result  # beyond the class: no
    X[:, 8:12] += 2.0 * (batch == "b2")[:, None]
    shortcut = audit(X, y, pd.DataFrame({"batch": batch}), permutations=99)
    assert shortcut["nuisances"]["batch"]["p_within_class"] == pytest.approx(0.01) and shortcut["flags"] == ["batch"]
