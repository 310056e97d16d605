"""The shortcut audit: do a model's explanations (its top genes) and its own predictions carry a nuisance variable,
the donor or patient, a batch, sex or sequencing centre the config names, the sample's library size, better than
chance, and more than they carry the class?

Each question is a cross-validated ridge model on the held-out test rows only (the model never saw them): features
(the top genes' values, or the predicted class probabilities), standardised on each training fold, predict a target
(the class; each nuisance variable). A categorical target is scored by balanced accuracy, a numeric one by the
out-of-fold R². Both become a *skill* on one scale, 0 at chance and 1 at perfect ((score - chance) / (1 - chance),
chance being the mean score of the permuted targets: about 1 / levels for categories, below 0 for R²), so that a
nuisance can be set against the class. The
p-value is a permutation test of the target (``permutations`` draws, sklearn's ``permutation_test_score`` rule
(1 + draws at least as good) / (1 + draws)); written here rather than with sklearn because ridge's fit is linear in
the target, so one solve per fold scores every permuted target at once (sklearn refits per draw: 200x slower).

A feature set is flagged when it carries a nuisance beyond the class (the nuisance permuted within each class, so
that a nuisance travelling with the class, a batch holding most of one tumour type, is the null; p below ``alpha`` /
the number of nuisances, Bonferroni) *and* with more skill than the class: its explanations then describe the
nuisance more than the biology.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: a numeric covariate with at most this many distinct values is read as categories (e.g. a 0/1 batch)
MAX_NUMERIC_LEVELS = 10
#: QC covariates whose values are spread over orders of magnitude: log1p before they are predicted
LOG_SCALED = ("total_counts",)


def target_kind(values: pd.Series) -> str:
    """'continuous' for a numeric column with more than MAX_NUMERIC_LEVELS distinct values, else 'categorical'."""
    numeric = pd.to_numeric(values, errors="coerce")
    present = values.notna() & (values.astype(str) != "")
    if present.any() and numeric[present].notna().all() and numeric[present].nunique() > MAX_NUMERIC_LEVELS:
        return "continuous"
    return "categorical"


def _folds(y: np.ndarray, kind: str, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    split = (
        StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        if kind == "categorical"
        else KFold(n_folds, shuffle=True, random_state=seed)
    )
    return list(split.split(np.zeros(len(y)), y if kind == "categorical" else None))


def _ridge_predictions(X: np.ndarray, Y: np.ndarray, folds, alpha: float) -> np.ndarray:
    """Out-of-fold ridge predictions of every column of ``Y`` (n, m) from ``X`` (n, d): one solve per fold."""
    out = np.empty_like(Y, dtype=np.float64)
    for train, test in folds:
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd == 0] = 1.0
        xt, xs = (X[train] - mu) / sd, (X[test] - mu) / sd
        ym = Y[train].mean(0)
        if xt.shape[1] <= xt.shape[0]:
            coef = np.linalg.solve(xt.T @ xt + alpha * np.eye(xt.shape[1]), xt.T @ (Y[train] - ym))
            out[test] = xs @ coef + ym
        else:  # more features than rows: the dual form, the same estimator
            dual = np.linalg.solve(xt @ xt.T + alpha * np.eye(xt.shape[0]), Y[train] - ym)
            out[test] = xs @ (xt.T @ dual) + ym
    return out


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray, n_levels: int) -> np.ndarray:
    """Balanced accuracy of each column of ``pred`` (n, draws) against ``y`` (n, draws)."""
    recalls = [((pred == c) & (y == c)).sum(0) / np.maximum((y == c).sum(0), 1) for c in range(n_levels)]
    return np.mean(recalls, axis=0)


def _scores(X: np.ndarray, ys: np.ndarray, levels, folds, alpha: float) -> np.ndarray:
    """The score of each column of ``ys`` (n, draws): balanced accuracy of the categories ``levels``, else R²."""
    n = len(ys)
    if levels is not None:
        k = len(levels)
        onehot = (ys[:, :, None] == np.arange(k)).reshape(n, -1).astype(np.float64)
        pred = _ridge_predictions(X, onehot, folds, alpha).reshape(n, -1, k).argmax(2)
        return _balanced_accuracy(pred, ys, k)
    pred = _ridge_predictions(X, ys, folds, alpha)
    sst = ((ys - ys.mean(0)) ** 2).sum(0)
    return 1.0 - ((pred - ys) ** 2).sum(0) / np.where(sst > 0, sst, 1.0)


def _permutations(n: int, count: int, strata: np.ndarray | None, seed: int) -> np.ndarray:
    """(n, 1 + count) row orders: the identity, then ``count`` permutations (each within ``strata`` when given)."""
    rng = np.random.default_rng(seed)
    draws = np.empty((n, 1 + count), dtype=np.intp)
    draws[:, 0] = np.arange(n)
    for i in range(1, count + 1):
        if strata is None:
            draws[:, i] = rng.permutation(n)
        else:
            order = np.arange(n)
            for value in np.unique(strata):
                members = np.flatnonzero(strata == value)
                order[members] = members[rng.permutation(len(members))]
            draws[:, i] = order
    return draws


def cv_skill(
    X: np.ndarray,
    target: pd.Series | np.ndarray,
    kind: str,
    *,
    permutations: int = 200,
    n_folds: int = 5,
    alpha: float = 1.0,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> dict:
    """How well ``X`` predicts ``target`` out of fold, against permutations of the target (within each of
    ``strata``'s values when given: the null of a target carried only through the strata, e.g. the class). Rows
    with a missing target are left out, and categories with a single row; the folds are at most the smallest
    category's rows.
    Returns the score (balanced accuracy or R²), its chance level, the skill, the permutation p and the rows used;
    ``skipped`` with the reason where the target cannot be tested (one category left, too few rows)."""
    values = pd.Series(np.asarray(target, dtype=object))
    present = values.notna().to_numpy() & (values.astype(str) != "").to_numpy() & (values.astype(str) != "nan")
    X = np.asarray(X, np.float64)
    if kind == "categorical":
        counts = values[present].astype(str).value_counts()
        keep_levels = counts.index[counts >= 2]
        rows = np.flatnonzero(present & values.astype(str).isin(keep_levels).to_numpy())
        levels, y = np.unique(values.iloc[rows].astype(str), return_inverse=True)
        if len(levels) < 2:
            what = ("no value", "one value")[len(levels)]
            return {"kind": kind, "skipped": f"{what} with two or more held-out rows (two are needed)"}
        n_folds = int(min(n_folds, np.bincount(y).min()))
    else:
        rows = np.flatnonzero(present)
        y = pd.to_numeric(values.iloc[rows]).to_numpy(np.float64)
        levels = None
        n_folds = min(n_folds, len(rows) // 2)
    if len(rows) < 6 or n_folds < 2:
        return {"kind": kind, "skipped": f"{len(rows)} held-out rows, too few to cross-validate"}
    draws = _permutations(len(rows), permutations, None if strata is None else np.asarray(strata)[rows], seed)
    folds = _folds(y, kind, n_folds, seed)
    Xr, k = X[rows], (len(levels) if levels is not None else 1)
    # the target and its permutations in batches of columns: (rows x draws x levels) stays under ~20M numbers
    step = max(1, int(2e7 // (len(rows) * k)))
    scores = np.concatenate(
        [_scores(Xr, y[draws[:, i : i + step]], levels, folds, alpha) for i in range(0, draws.shape[1], step)]
    )
    observed, null = float(scores[0]), scores[1:]
    # chance: what the same procedure scores on the permuted targets (about 1 / levels for categories; below 0 for
    # R², which a ridge fitted to noise drives negative out of fold)
    chance = float(null.mean())
    return {
        "kind": kind,
        "score": observed,
        "chance": chance,
        "skill": (observed - chance) / (1.0 - chance),
        "p": float((1 + (null >= observed).sum()) / (1 + len(null))),
        "null_mean": chance,
        "n": int(len(rows)),
        "levels": None if levels is None else int(len(levels)),
        "folds": int(n_folds),
    }


def audit(
    features: np.ndarray,
    labels: np.ndarray,
    nuisances: pd.DataFrame,
    *,
    permutations: int = 200,
    n_folds: int = 5,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """One feature set (a method's top genes, or the predicted probabilities) against the class ``labels`` and each
    column of ``nuisances`` (row-aligned). Returns ``class``, ``nuisances`` (name -> cv_skill, with
    ``p_within_class`` and ``skill_beyond_class``: the same against the target permuted within each class), the
    flagged nuisances and ``flagged``. A nuisance is flagged when the features carry it beyond the class
    (``p_within_class`` below ``alpha`` / the nuisances tested) and carry it better than they carry the class: a
    nuisance that only travels with the class (a batch that holds most of one tumour type) is not flagged."""
    options = dict(permutations=permutations, n_folds=n_folds, seed=seed)
    cls = cv_skill(features, labels, "categorical", **options)
    out: dict = {"class": cls, "nuisances": {}}
    for name in nuisances.columns:
        column = nuisances[name]
        kind = target_kind(column)
        if kind == "continuous" and name in LOG_SCALED:
            column = np.log1p(pd.to_numeric(column, errors="coerce").clip(lower=0))
        result = cv_skill(features, column, kind, **options)
        if "skipped" not in result:
            # the same target permuted within each class: what the features carry of it beyond the class
            within = cv_skill(features, column, kind, strata=labels, **options)
            result["p_within_class"] = within["p"]
            result["skill_beyond_class"] = (result["score"] - within["null_mean"]) / (1.0 - within["null_mean"])
        out["nuisances"][name] = result
    tested = {k: v for k, v in out["nuisances"].items() if "skipped" not in v}
    threshold = alpha / max(len(tested), 1)
    class_skill = cls.get("skill", 0.0) if "skipped" not in cls else 0.0
    out["alpha"], out["threshold"] = alpha, threshold
    out["flags"] = sorted(k for k, v in tested.items() if v["p_within_class"] < threshold and v["skill"] > class_skill)
    out["flagged"] = bool(out["flags"])
    return out


def top_gene_columns(class_means: np.ndarray, k: int) -> np.ndarray:
    """The union of each class's top ``k`` genes of a method's (n_classes, n_genes) class-mean attributions, ranked
    as top_genes.csv ranks them (largest first), as column indices in gene order."""
    means = np.nan_to_num(np.asarray(class_means, np.float64), nan=-np.inf)
    top = np.argsort(-means, axis=1, kind="stable")[:, :k]
    return np.unique(top)


# -- the audit as table rows (the report's table, the docs' demo table) ------------------------------------------


def _cell(result: dict) -> str:
    if "skipped" in result:
        return f"not tested ({result['skipped']})"
    return f"{result['skill']:.2f} (p {result['p']:.2g})"


def _edge(e: dict) -> str:
    share = f"{e['share_mean']:.3f} ({e['chance_mean']:.3f})"
    return f"{share}, {e['above_chance']} of {e['n']} above, p {e['p_sign_test']:.2g}"


def table_rows(model: str, audit: dict) -> list[dict]:
    """Rows of a table of one model's audit (explain's entry or summary.json's headline of it): per feature set the
    class's and each nuisance's skill and p, and the flags; for volumes, each method's edge checks; one row saying
    why for a skipped audit."""
    if "skipped" in audit:
        return [{"model": model, "features": "", "class": f"not audited: {audit['skipped']}"}]
    if "volume" in audit:  # volumes: each method's map outside the brain and at the volume's border
        return [
            {
                "model": model,
                "features": f"{method}: map energy",
                **{
                    f"{edge.replace('_', ' ')} (chance)": _edge(e[edge])
                    for edge in ("outside_brain", "border")
                    if edge in e
                },
                "flagged": ", ".join(e["flags"]) or "no",
            }
            for method, e in audit["volume"].items()
        ]
    sets = [("predicted probabilities", audit["predictions"])] + [
        (f"{method}: top {audit['top_k']} genes per class ({r['genes']} genes)", r)
        for method, r in audit["methods"].items()
    ]
    rows = []
    for what, result in sets:
        row = {"model": model, "features": what, "class": _cell(result["class"])}
        row.update({name: _cell(r) for name, r in result["nuisances"].items()})
        row["flagged"] = ", ".join(result["flags"]) or "no"
        rows.append(row)
    return rows
