"""Comparing two models over the same cross-validation folds, with tests that can actually reach significance.

- Corrected resampled t-test (Nadeau & Bengio 2003): the fold scores of k-fold CV are not independent (the training
  sets overlap), so the variance of the paired differences is inflated by (1/J + n_test/n_train).
- Wilcoxon signed-rank over the J paired scores (exact): with J pairs and no ties its smallest two-sided p-value is
  2 / 2^J, so 5 folds alone can never give p < 0.0625; the result says so instead of implying a finding.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def corrected_resampled_ttest(a: np.ndarray, b: np.ndarray, n_train: int, n_test: int) -> dict:
    """Paired scores of two models on the same J folds -> t, p (two-sided, J - 1 degrees of freedom)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    J = len(d)
    var = d.var(ddof=1)
    if J < 2:
        return {"t": float("nan"), "p": float("nan"), "df": J - 1}
    if var == 0:  # identical differences on every fold: no difference at all, or an infinitely consistent one
        return {
            "t": float("nan") if d.mean() == 0 else float(np.sign(d.mean()) * np.inf),
            "p": 1.0 if d.mean() == 0 else 0.0,
            "df": J - 1,
        }
    t = d.mean() / np.sqrt((1.0 / J + n_test / n_train) * var)
    p = 2 * stats.t.sf(abs(t), df=J - 1)
    return {"t": float(t), "p": float(p), "df": J - 1}


def wilcoxon_min_p(J: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can give on J pairs without ties."""
    return 2.0 / 2**J


def wilcoxon(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    J = len(d)
    out = {"n_pairs": J, "min_attainable_p": wilcoxon_min_p(J)}
    if np.all(d == 0):
        return {**out, "statistic": float("nan"), "p": 1.0}
    res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided", method="auto")
    return {**out, "statistic": float(res.statistic), "p": float(res.pvalue)}


def compare_models(
    name_a: str, name_b: str, a: np.ndarray, b: np.ndarray, n_train: int, n_test: int, metric: str, alpha: float = 0.05
) -> dict:
    """Both tests plus a plain statement of what the design can and cannot show."""
    t = corrected_resampled_ttest(a, b, n_train, n_test)
    w = wilcoxon(a, b)
    J = len(a)
    notes = []
    if w["min_attainable_p"] >= alpha:
        notes.append(
            f"with {J} paired folds the Wilcoxon test cannot reach p < {alpha} whatever the data "
            f"(smallest attainable p = {w['min_attainable_p']:.4f}); use repeated CV (train_torch.repeats)"
        )
    significant = bool(t["p"] < alpha) if np.isfinite(t["p"]) else False
    mean_diff = float(np.mean(np.asarray(a) - np.asarray(b)))
    verdict = (
        f"{name_a} {'outperforms' if mean_diff > 0 else 'underperforms'} {name_b} on {metric} "
        f"(mean difference {mean_diff:+.3f}, corrected t-test p = {t['p']:.3g})"
        if significant
        else f"no significant difference in {metric} between {name_a} and {name_b} "
        f"(mean difference {mean_diff:+.3f}, corrected t-test p = {t['p']:.3g}, {J} folds)"
    )
    return {
        "a": name_a,
        "b": name_b,
        "metric": metric,
        "n_folds": J,
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "mean_difference": mean_diff,
        "corrected_ttest": t,
        "wilcoxon": w,
        "significant": significant,
        "statement": "; ".join([verdict, *notes]),
    }


def compare_all(models: list[dict], metric: str = "val_macro_f1", label: str = "validation macro-F1") -> list[dict]:
    """Every pair of models trained on the same folds, from any trainer.

    models: [{"name", "folds": the rows of folds.csv, "splits": metrics.json's ``splits`` (the protocol's
    description with its fingerprint)}]. Pairs whose splits differ are not compared fold by fold (their scores are
    not paired); they are returned with ``comparable: False`` and a statement saying why.
    """
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            sa, sb = a.get("splits") or {}, b.get("splits") or {}
            if not sa.get("splits") or sa.get("splits") != sb.get("splits"):
                out.append(
                    {
                        "a": a["name"],
                        "b": b["name"],
                        "metric": label,
                        "comparable": False,
                        "statement": f"{a['name']} and {b['name']} were not trained on the same folds: "
                        "no paired comparison",
                    }
                )
                continue
            scores_a = np.array([f[metric] for f in a["folds"]], dtype=float)
            scores_b = np.array([f[metric] for f in b["folds"]], dtype=float)
            result = compare_models(
                a["name"], b["name"], scores_a, scores_b, int(sa["n_train_mean"]), int(sa["n_val_mean"]), label
            )
            out.append({**result, "comparable": True})
    return out
