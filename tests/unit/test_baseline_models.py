"""The baselines' fits: a small problem runs BLAS on one thread, a large one as the process has it; the fit is the
same model either way."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from shared.evaluation.baseline_models import SMALL_PROBLEM, make_baseline, small_problem_blas


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_a_small_problem_runs_blas_on_one_thread_and_a_large_one_as_the_process_has_it():
    assert _blas_threads(), "no BLAS library seen by threadpoolctl"
    with threadpool_limits(limits=2, user_api="blas"):
        outer = _blas_threads()
        with small_problem_blas(np.zeros((800, 256))):
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == outer
        # as many entries as the bound, without the memory: a broadcast view
        with small_problem_blas(np.broadcast_to(0.0, (SMALL_PROBLEM,))):
            assert _blas_threads() == outer


def test_the_fit_on_one_thread_is_the_same_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 40))
    y = (x[:, :3] @ [1.0, -1.0, 0.5] + rng.normal(scale=0.5, size=300) > 0).astype(int) + (x[:, 3] > 1)
    with threadpool_limits(limits=2, user_api="blas"):
        free = make_baseline("logistic_regression", 0).fit(x, y)
        with small_problem_blas(x):
            one = make_baseline("logistic_regression", 0).fit(x, y)
    np.testing.assert_allclose(one.coef_, free.coef_, rtol=0, atol=1e-8)
    assert (one.predict(x) == free.predict(x)).all()
