"""Split-conformal prediction sets (shared.evaluation.conformal): coverage on exchangeable data, the flag when the
calibration is not exchangeable with the test, set sizes on easy and hard problems, the out-of-fold averaging."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.evaluation.conformal import (
    calibrate,
    conformal_quantile,
    conformal_sets,
    lac_scores,
    out_of_fold,
    prediction_sets,
)

pytestmark = pytest.mark.unit

CLASSES = ["a", "b", "c", "d"]


def _problem(rng: np.random.Generator, n: int, separation: float, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of noisy logits with the true class raised by ``separation`` (large: easy)."""
    y = rng.choice(len(CLASSES), size=n, p=weights)
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), y] += separation
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), y


def _run(seed: int, separation=1.5, coverage=0.9, n_cal=500, n_test=200, shift=0.0, by_class=False, weights=None):
    rng = np.random.default_rng(seed)
    cal_p, cal_y = _problem(rng, n_cal, separation + shift, weights)
    test_p, test_y = _problem(rng, n_test, separation, weights)
    ids = [f"s{i}" for i in range(n_test)]
    return conformal_sets(cal_p, cal_y, test_p, test_y, ids, CLASSES, coverage, by_class, seed=seed)


def test_the_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 20) / 20  # n = 19: ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.9) == pytest.approx(18 / 20)
    assert conformal_quantile(np.arange(99), 0.9) == 89  # ceil(100 * 0.9) = 90th, not 91st (floating point)
    assert conformal_quantile(np.arange(5), 0.9) == np.inf  # ceil(6 * 0.9) = 6 > 5: every class in every set
    assert lac_scores(np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 0])) == pytest.approx([0.3, 0.8])


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_coverage_on_exchangeable_data_is_the_target_over_many_seeds(coverage):
    runs = [_run(seed, coverage=coverage)[0] for seed in range(150)]
    observed = np.array([r["coverage"] for r in runs])
    # the mean over seeds within 1.5 points; a run within two standard deviations of its coverage (binomial on the
    # 200 test samples, beta on the 500 calibration ones: 2.5 points at 90%, so the demo's +-5 points is 2) 9
    # times in 10 or more
    assert abs(observed.mean() - coverage) < 0.015
    sd = np.sqrt(coverage * (1 - coverage) * (1 / 200 + 1 / 502))
    assert np.mean(np.abs(observed - coverage) <= 2 * sd) >= 0.9
    # the null of exchangeability is rejected at its level (1%), not more
    assert np.mean([r["off_target"] for r in runs]) <= 0.04


def test_calibration_not_exchangeable_with_the_test_is_off_target_and_flagged():
    """The planted signal: calibration probabilities from an easier problem than the test's (scores shifted
    down), so the threshold is too tight and the test is under-covered; the flag must say so on every seed."""
    for seed in range(20):
        figures, _ = _run(seed, shift=2.0)
        assert figures["coverage"] < 0.85 and figures["off_target"] and figures["coverage_p"] < 0.01
        clean, _ = _run(seed)
        assert abs(clean["coverage"] - 0.9) <= 0.06
    harder, _ = _run(0, shift=-1.0)  # calibrated on a harder problem: over-covered, flagged as well
    assert harder["coverage"] > 0.95 and harder["off_target"]


def test_sets_are_single_classes_on_an_easy_problem_and_larger_on_a_hard_one():
    easy, easy_table = _run(0, separation=8.0)
    hard, _ = _run(0, separation=0.5)
    assert easy_table["set_size"].le(1).all() and easy["n_single"] >= 0.85 * easy["n"]
    assert easy["mean_set_size"] <= 1.0 < 2.0 < hard["mean_set_size"]
    assert hard["n_ambiguous"] > 0.5 * hard["n"]


def test_the_table_says_each_samples_set():
    figures, table = _run(1)
    assert list(table.columns) == ["sample", "label", "predicted", "set", "set_size", "covered"]
    for row in table.itertuples():
        members = row.set.split("|") if row.set else []
        assert len(members) == row.set_size and (row.label in members) == row.covered
        assert all(m in CLASSES for m in members)
    assert figures["coverage"] == pytest.approx(table["covered"].mean())
    assert figures["n_single"] + figures["n_empty"] + figures["n_ambiguous"] == len(table)
    assert sum(v["n"] for v in figures["per_class"].values()) == len(table)


def test_class_conditional_calibration_covers_a_hard_small_class():
    """With a rare class the model finds hard, marginal calibration under-covers it; Mondrian covers each class."""
    weights = [0.55, 0.25, 0.15, 0.05]

    def rare_hard(seed, by_class):
        rng = np.random.default_rng(seed)

        def draw(n):
            p, y = _problem(rng, n, 3.0, weights)
            hard = y == 3
            p[hard] = _problem(rng, int(hard.sum()), 0.3)[0]  # class d is barely told apart
            return p, y

        (cal_p, cal_y), (test_p, test_y) = draw(3000), draw(3000)
        ids = [str(i) for i in range(len(test_y))]
        return conformal_sets(cal_p, cal_y, test_p, test_y, ids, CLASSES, 0.9, by_class, seed=seed)[0]

    marginal, mondrian = rare_hard(0, False), rare_hard(0, True)
    assert marginal["per_class"]["d"]["coverage"] < 0.8
    assert all(abs(c["coverage"] - 0.9) < 0.06 for c in mondrian["per_class"].values())
    assert not mondrian["off_target"] and len(set(mondrian["thresholds"].values())) == 4


def test_out_of_fold_averages_a_rows_repeats_and_sets_follow_thresholds():
    frames = [
        pd.DataFrame({"repeat": 0, "fold": 0, "row": [3, 1], "proba": [np.array([1.0, 0.0]), np.array([0.2, 0.8])]}),
        pd.DataFrame({"repeat": 1, "fold": 0, "row": [1, 3], "proba": [np.array([0.4, 0.6]), np.array([0.6, 0.4])]}),
    ]
    rows, proba = out_of_fold(frames)
    assert rows.tolist() == [1, 3]
    assert proba == pytest.approx(np.array([[0.3, 0.7], [0.8, 0.2]]))
    thresholds = calibrate(np.array([[0.9, 0.1]] * 9 + [[0.4, 0.6]]), np.zeros(10, int), 0.8)
    assert thresholds == pytest.approx([0.1, 0.1], abs=1e-6)  # ceil(11 * 0.8) = 9th smallest score of 10
    sets = prediction_sets(np.array([[0.95, 0.05], [0.5, 0.5], [0.05, 0.95]]), thresholds)
    assert sets.tolist() == [[True, False], [False, False], [False, True]]
