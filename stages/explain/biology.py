"""Do the explanations agree with biology? Three checks of every gene ranking (Bontonou et al.; Hooker et al. 2019):

1. differential expression: scanpy's ``rank_genes_groups`` one-vs-rest (Wilcoxon and t-test) on the training split
   only, on the gene values the models saw; each class's top-k attributed genes against its top-k DE genes (overlap,
   Jaccard, a permutation p-value against random gene sets of the same size) and a Spearman correlation over all
   genes;
2. keep and remove, then retrain: a cheap classifier trained on the training split with only the union of the
   classes' top-k genes (keep) or without them (remove), scored on the held-out test split, beside random genes
   (seeded draws) and the DE top-k genes;
3. over-representation of each class's top-k genes in gene sets the user supplies (a GMT file), one-sided
   hypergeometric test with Benjamini-Hochberg over the sets, the background being the genes the model saw.

The training values are read once per experiment (``TrainingData``) and the DE result is cached by gene list, so
several models on the same genes share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import f1_score

from shared.errors import UserError
from shared.evaluation.baseline_models import make_baseline
from shared.evaluation.rankings import gene_lookup, repeated_symbols
from shared.logs import get_logger

log = get_logger("stages.explain")

DE_METHODS = ("wilcoxon", "t-test")


# ---------------------------------------------------------------------------------------------------- gene sets
def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """A GMT file (MSigDB's format: one set a line, ``name <tab> description <tab> gene <tab> gene ...``) ->
    {name: genes}. A line with fewer than three fields, an empty name or a repeated name is an error naming the
    file and the line; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"explain.biology.gene_sets: {path} does not exist; give the path of a GMT file")
    sets: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not a text GMT file ({exc.reason} at byte {exc.start}); give a plain-text .gmt"
        ) from exc
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if len(fields) < 3 or not fields[0].strip() or not genes:
            raise UserError(
                f"{path}:{n}: a GMT line is 'name<TAB>description<TAB>gene<TAB>gene...' with at least one "
                f"gene (this one has {len(fields)} tab-separated fields); fix or remove the line"
            )
        name = fields[0].strip()
        if name in sets:
            raise UserError(f"{path}:{n}: gene set '{name}' is named twice; gene set names must be unique")
        sets[name] = list(dict.fromkeys(genes))
    if not sets:
        raise UserError(f"{path}: no gene set in the file; a GMT file has one set a line")
    return sets


def match_gene_sets(
    sets: dict[str, list[str]], genes: np.ndarray, symbols: np.ndarray | None, path: str, min_size: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each set -> the indices of the data's genes it names (by identifier or, where the data has symbols, by
    symbol). Sets matching no gene are named in a warning, none matching at all is an error; sets with fewer than
    ``min_size`` genes in the data are left out (returned with the reason)."""
    position = {g: i for i, g in enumerate(np.asarray(genes).astype(str))}
    lookup = gene_lookup(genes, symbols)
    repeated = repeated_symbols([g for members in sets.values() for g in members], lookup)
    if repeated:
        log.info(
            "explain.biology.gene_sets (%s): symbols carried by several genes, each counted: %s",
            path,
            ", ".join(repeated[:10]),
        )
    matched, left_out = {}, {}
    for name, members in sets.items():
        idx = np.unique([position[i] for g in members for i in lookup.get(g, ())]).astype(int)
        if not len(idx):
            left_out[name] = "no gene in the data"
        elif len(idx) < min_size:
            left_out[name] = f"{len(idx)} genes in the data (min_set_size {min_size})"
        else:
            matched[name] = idx
    none = [n for n, why in left_out.items() if why == "no gene in the data"]
    if len(none) == len(sets):
        raise UserError(
            f"explain.biology.gene_sets ({path}): no gene set shares a gene with the data (e.g. "
            f"{', '.join(list(sets)[:3])}); check the identifiers (symbols vs Ensembl ids)"
        )
    if none:
        log.warning(
            "explain.biology.gene_sets (%s): %d sets share no gene with the data, left out: %s",
            path,
            len(none),
            ", ".join(none[:10]) + (" ..." if len(none) > 10 else ""),
        )
    if not matched:
        raise UserError(
            f"explain.biology.gene_sets ({path}): no gene set has min_set_size ({min_size}) genes in the "
            "data; lower explain.biology.min_set_size or use larger sets"
        )
    return matched, left_out


def over_representation(chosen: np.ndarray, sets: dict[str, np.ndarray], n_background: int) -> pd.DataFrame:
    """One-sided hypergeometric test of each set among ``chosen`` gene indices (background: ``n_background``
    genes), Benjamini-Hochberg over the sets: gene_set, set_size, overlap, expected, odds_ratio, p, p_adj."""
    chosen_set = set(int(i) for i in chosen)
    rows = []
    for name, idx in sets.items():
        a = len(chosen_set.intersection(idx.tolist()))
        k, m = len(chosen_set), len(idx)
        p = float(stats.hypergeom.sf(a - 1, n_background, m, k))
        b, c = k - a, m - a
        d = n_background - a - b - c
        rows.append(
            {
                "gene_set": name,
                "set_size": m,
                "overlap": a,
                "expected": k * m / n_background,
                "odds_ratio": (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)),
                "p": p,
            }
        )
    table = pd.DataFrame(rows)
    table["p_adj"] = stats.false_discovery_control(table["p"].to_numpy(), method="bh") if len(table) else []
    return table.sort_values(["p", "gene_set"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------- training split data
@dataclass
class TrainingData:
    """The gene values the models saw, training split (augmented copies left out) and held-out test split."""

    genes: np.ndarray
    symbols: np.ndarray | None
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    de: dict = field(default_factory=dict)

    @classmethod
    def load(cls, exp_dir: Path, spec: dict, genes: np.ndarray, symbols, classes: list[str]) -> TrainingData | None:
        inp = spec["input"]
        source = inp["array"] if inp["kind"] == "vector" else inp.get("gene_values")
        if source is None:
            return None
        scale = float(inp.get("scale", 1.0)) if inp["kind"] == "vector" else 1.0
        samples = pd.read_csv(exp_dir / inp["samples"], dtype={"sample": str, "label": str})
        original = (
            samples["augmented_from"].isna() if "augmented_from" in samples else pd.Series(True, index=samples.index)
        )
        train = np.flatnonzero((samples["split"] == "train").to_numpy() & original.to_numpy())
        test = np.flatnonzero((samples["split"] == "test").to_numpy())
        values = np.load(exp_dir / source, mmap_mode="r")
        labels = samples["label_index"].to_numpy()

        def rows(r):
            return np.asarray(values[r], dtype=np.float32).reshape(len(r), -1) * np.float32(scale)

        return cls(
            np.asarray(genes).astype(str), symbols, list(classes), rows(train), labels[train], rows(test), labels[test]
        )


def differential_expression(data: TrainingData) -> dict:
    """scanpy's rank_genes_groups one-vs-rest on the training split, per method: {"adata_uns": the result as scanpy
    stores it, "scores": genes x classes scores}. Classes without two training samples are absent."""
    import anndata as ad
    import scanpy as sc

    present = [c for i, c in enumerate(data.classes) if (data.y_train == i).sum() >= 2]
    keep = np.isin(data.y_train, [data.classes.index(c) for c in present])
    adata = ad.AnnData(
        X=data.x_train[keep].astype(np.float32),
        obs=pd.DataFrame(
            {"label": pd.Categorical(np.asarray(data.classes)[data.y_train[keep]], categories=present)},
            index=[f"s{i}" for i in range(int(keep.sum()))],
        ),
        var=pd.DataFrame(index=pd.Index(data.genes, name="gene")),
    )
    out = {}
    for method in DE_METHODS:
        key = "rank_genes_groups" if method == "wilcoxon" else f"rank_genes_groups_{method}"
        sc.tl.rank_genes_groups(
            adata,
            "label",
            method=method,
            reference="rest",
            use_raw=False,
            n_genes=adata.n_vars,
            key_added=key,
            tie_correct=(method == "wilcoxon"),
        )
        frame = sc.get.rank_genes_groups_df(adata, group=None, key=key)
        scores = frame.pivot(index="names", columns="group", values="scores").reindex(index=data.genes)
        out[method] = {"key": key, "uns": adata.uns[key], "scores": scores[[c for c in present]]}
    return out


# ------------------------------------------------------------------------------------------------ DE agreement
def _order(values: np.ndarray) -> np.ndarray:
    """Gene indices, highest value first (NaN last, ties in index order)."""
    return np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")


def null_overlaps(n_genes: int, k: int, draws: int, seed: int) -> np.ndarray:
    """Overlaps of ``draws`` random k-gene sets with a fixed k-gene set (the permutation null of an overlap)."""
    rng = np.random.default_rng(seed)
    return np.array([int((rng.choice(n_genes, k, replace=False) < k).sum()) for _ in range(draws)])


def de_agreement(
    class_scores: np.ndarray, signed: bool, de: dict, classes: list[str], ks: list[int], permutations: int, seed: int
) -> pd.DataFrame:
    """(n_classes, n_genes) class-mean attributions against the DE scores: per DE method x class x k the overlap of
    the top-k sets, their Jaccard index, the permutation p-value of the overlap, and the Spearman correlation over
    all genes. Signed rankings are compared with up-regulation (highest DE score first); unsigned ones (magnitudes)
    with |DE score|, a gene strongly down in a class being as informative to the model as one strongly up."""
    rows = []
    n_genes = class_scores.shape[1]
    nulls = {k: null_overlaps(n_genes, k, permutations, seed + k) for k in ks}
    for method, result in de.items():
        for c, cls in enumerate(classes):
            if cls not in result["scores"].columns or np.isnan(class_scores[c]).all():
                continue
            de_scores = result["scores"][cls].to_numpy(dtype=float)
            de_key = de_scores if signed else np.abs(de_scores)
            attr_order, de_order = _order(class_scores[c]), _order(de_key)
            rho = stats.spearmanr(class_scores[c], de_key, nan_policy="omit").statistic
            for k in ks:
                overlap = len(np.intersect1d(attr_order[:k], de_order[:k]))
                p = (1 + int((nulls[k] >= overlap).sum())) / (1 + permutations)
                rows.append(
                    {
                        "de_method": method,
                        "class": cls,
                        "k": k,
                        "overlap": overlap,
                        "expected": k * k / n_genes,
                        "jaccard": overlap / (2 * k - overlap),
                        "p": p,
                        "better_than_chance": bool(p < 0.05),
                        "spearman": float(rho),
                    }
                )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- keep / remove, retrain
class Retrainer:
    """Held-out macro-F1 of the cheap model trained on a subset of genes; fits cached by gene set."""

    def __init__(self, data: TrainingData, model: str, seed: int):
        self.data, self.model, self.seed, self.cache = data, model, seed, {}
        # z-scored on the training split: the same model, and lbfgs converges in a fraction of the iterations
        mean, sd = data.x_train.mean(0), data.x_train.std(0)
        sd[sd == 0] = 1.0
        self.x_train, self.x_test = (data.x_train - mean) / sd, (data.x_test - mean) / sd

    def fit(self, genes: np.ndarray):
        """The cheap model fitted on the training split's ``genes`` (never a test value)."""
        genes = np.sort(np.asarray(genes, dtype=int))
        return make_baseline(self.model, self.seed).fit(np.ascontiguousarray(self.x_train[:, genes]), self.data.y_train)

    def score(self, genes: np.ndarray) -> float:
        """Held-out macro-F1 of ``fit(genes)`` (NaN for no genes)."""
        genes = np.sort(np.asarray(genes, dtype=int))
        key = genes.tobytes()
        if key not in self.cache:
            if not len(genes):
                self.cache[key] = float("nan")
            else:
                pred = self.fit(genes).predict(np.ascontiguousarray(self.x_test[:, genes]))
                self.cache[key] = float(
                    f1_score(
                        self.data.y_test, pred, average="macro", labels=np.unique(self.data.y_test), zero_division=0
                    )
                )
        return self.cache[key]


def union_top(class_scores: np.ndarray, k: int) -> np.ndarray:
    """The union of every class's top-k genes."""
    return np.unique(np.concatenate([_order(s)[:k] for s in class_scores if not np.isnan(s).all()]))


def keep_remove(
    class_scores: np.ndarray, de_scores: np.ndarray, ks: list[int], retrainer: Retrainer, draws: int, seed: int
) -> pd.DataFrame:
    """Per k: held-out macro-F1 with only (keep) and without (remove) the union of the classes' top-k genes, beside
    the same number of random genes (``draws`` seeded draws: mean and sd) and the DE top-k union."""
    n = class_scores.shape[1]
    everything = retrainer.score(np.arange(n))
    rows = []
    for k in ks:
        chosen, de = union_top(class_scores, k), union_top(de_scores, k)
        rng = np.random.default_rng(seed + k)
        randoms = [rng.choice(n, len(chosen), replace=False) for _ in range(draws)]
        keep_r = [retrainer.score(r) for r in randoms]
        remove_r = [retrainer.score(np.setdiff1d(np.arange(n), r)) for r in randoms]
        keep, remove = retrainer.score(chosen), retrainer.score(np.setdiff1d(np.arange(n), chosen))
        rows.append(
            {
                "k": k,
                "n_genes_kept": len(chosen),
                "keep_f1": keep,
                "remove_f1": remove,
                "random_keep_f1": float(np.mean(keep_r)),
                "random_keep_sd": float(np.std(keep_r)),
                "random_keep_max": float(np.max(keep_r)),
                "random_remove_f1": float(np.mean(remove_r)),
                "random_remove_sd": float(np.std(remove_r)),
                "de_keep_f1": retrainer.score(de),
                "de_remove_f1": retrainer.score(np.setdiff1d(np.arange(n), de)),
                "all_genes_f1": everything,
                "remove_drop": everything - remove,
                "keep_beats_random": bool(keep > np.max(keep_r)),
            }
        )
    return pd.DataFrame(rows)


def verdict(retrain: pd.DataFrame, min_drop: float) -> dict:
    """Flags of one ranking's keep/remove table: kept genes no better than random at the smallest k; removal costing
    less than ``min_drop`` macro-F1 at every k where genes remain."""
    first = retrain.iloc[0]
    drops = retrain["remove_drop"].dropna()
    return {
        "keep_no_better_than_random": not bool(first["keep_beats_random"]),
        "removal_costs_nothing": bool(len(drops) and (drops < min_drop).all()),
    }


def usable_ks(p, key: str, n_genes: int, model: str) -> list[int]:
    """The k values of ``explain.biology.<key>`` for a model of ``n_genes`` genes. A k larger than that is an error
    when the user set the list; from the default list such values are dropped (a small gene panel keeps working)."""
    ks = getattr(p, key)
    ks = ks if isinstance(ks, list) else [ks]
    too_big = [k for k in ks if k > n_genes]
    if not too_big:
        return ks
    if getattr(p, key) != type(p).model_fields[key].get_default(call_default_factory=True):
        raise UserError(
            f"explain.biology.{key}: k = {', '.join(map(str, too_big))} is larger than the {n_genes} genes "
            f"model '{model}' reads; use values up to {n_genes}"
        )
    kept = [k for k in ks if k <= n_genes] or [n_genes]
    log.info("explain.biology.%s: %s left out (model '%s' reads %d genes)", key, too_big, model, n_genes)
    return kept


# ------------------------------------------------------------------------------------------------ orchestration
class Context:
    """What the biology checks share across the models of one experiment: training data and DE per gene list, the
    retraining cache, the gene sets."""

    def __init__(self, exp_dir: Path, p, seed: int):
        self.exp_dir, self.p, self.seed = exp_dir, p, seed
        self.by_genes: dict[tuple, tuple[TrainingData, dict, Retrainer]] = {}
        self.gene_sets = read_gmt(p.gene_sets) if p.gene_sets else None

    def prepared(self, spec: dict, genes, symbols, classes: list[str]):
        """(training data, DE, retrainer) of a model's genes, computed once per gene list and value source."""
        inp = spec["input"]
        key = (
            tuple(np.asarray(genes).astype(str)),
            inp.get("samples"),
            inp["array"] if inp["kind"] == "vector" else inp.get("gene_values"),
        )
        if key not in self.by_genes:
            data = TrainingData.load(self.exp_dir, spec, genes, symbols, classes)
            if data is None:
                self.by_genes[key] = None
            else:
                t0 = time.time()
                de = differential_expression(data)
                log.info(
                    "differential expression (%s) on %d training samples x %d genes: %.1f s",
                    " and ".join(DE_METHODS),
                    len(data.y_train),
                    len(data.genes),
                    time.time() - t0,
                )
                sets = (
                    match_gene_sets(self.gene_sets, data.genes, data.symbols, self.p.gene_sets, self.p.min_set_size)[0]
                    if self.gene_sets is not None
                    else None
                )
                self.by_genes[key] = (data, de, Retrainer(data, self.p.retrain_model, self.seed), sets)
        return self.by_genes[key]


def de_matrix(de: dict, classes: list[str], n_genes: int) -> np.ndarray:
    """(n_classes, n_genes) Wilcoxon DE scores (NaN rows for classes without DE)."""
    scores = de["wilcoxon"]["scores"]
    return np.stack([scores[c].to_numpy(dtype=float) if c in scores else np.full(n_genes, np.nan) for c in classes])


def assess_ranking(
    class_scores: np.ndarray,
    signed: bool,
    prepared,
    p,
    seed: int,
    classes: list[str],
    de_scores: np.ndarray | None = None,
) -> dict:
    """The checks of one ranking (n_classes x n_genes class scores) under settings ``p``: tables. The keep/remove
    retraining runs when ``de_scores`` (de_matrix, its DE reference) is given."""
    data, de, retrainer, sets = prepared
    overlap = de_agreement(class_scores, signed, de, classes, p.de_k, p.permutations, seed)
    out = {"de_overlap": overlap}
    if de_scores is not None:
        out["retraining"] = keep_remove(class_scores, de_scores, p.retrain_k, retrainer, p.random_draws, seed)
    if sets is not None:
        tables = []
        for c, cls in enumerate(classes):
            if np.isnan(class_scores[c]).all():
                continue
            table = over_representation(_order(class_scores[c])[: p.enrichment_k], sets, len(data.genes))
            tables.append(table.assign(**{"class": cls}))
        out["enrichment"] = pd.concat(tables, ignore_index=True)
    return out


def json_safe(value):
    """NaN and infinities -> None, recursively (JSON has no NaN: a strict parser, a browser's included, rejects it;
    e.g. the F1 after removing every gene)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def summarise(result: dict, p) -> dict:
    """The JSON view of one ranking's checks (summary.json and metrics.json); NaN written as null."""
    return json_safe(_summarise(result, p))


def enrichment_summary(table: pd.DataFrame) -> dict:
    """Each class's three best gene sets (enrichment table -> JSON records)."""
    return {
        cls: g.head(3)[["gene_set", "overlap", "p", "p_adj"]].to_dict(orient="records")
        for cls, g in table.groupby("class", sort=False)
    }


def _summarise(result: dict, p) -> dict:
    ov = result["de_overlap"]
    out: dict = {"de_overlap": {}}
    for (method, k), g in ov.groupby(["de_method", "k"], sort=False):
        out["de_overlap"].setdefault(method, {})[f"top_{k}"] = {
            "mean_overlap": float(g["overlap"].mean()),
            "mean_jaccard": float(g["jaccard"].mean()),
            "mean_spearman": float(g["spearman"].mean()),
            "classes_better_than_chance": int(g["better_than_chance"].sum()),
            "n_classes": int(len(g)),
            "per_class": {r["class"]: {"overlap": int(r["overlap"]), "p": float(r["p"])} for _, r in g.iterrows()},
        }
    first = ov[(ov["de_method"] == "wilcoxon") & (ov["k"] == p.de_k[0])]
    out["de_no_better_than_chance"] = bool(len(first) and not first["better_than_chance"].any())
    if "retraining" in result:
        rt = result["retraining"]
        out["retraining"] = rt.to_dict(orient="records")
        out.update(verdict(rt, p.min_drop))
    if "enrichment" in result:
        out["enrichment"] = enrichment_summary(result["enrichment"])
    return out


def baseline_importances(name: str, data: TrainingData, seed: int, repeats: int) -> np.ndarray:
    """(n_classes, n_genes) per-class importances of a baseline refit on the whole training split (train_torch keeps
    no fold model): logistic-regression coefficients; random-forest permutation importance on the held-out test
    split, per class the mean fall of the true-class probability of that class's test samples when a gene's values
    are permuted across the test samples (``permutation_importance``)."""
    n_classes = len(data.classes)
    clf = make_baseline(name, seed).fit(data.x_train, data.y_train)
    out = np.full((n_classes, len(data.genes)), np.nan)
    if name == "logistic_regression":
        coef = clf.coef_ if clf.coef_.shape[0] > 1 else np.vstack([-clf.coef_, clf.coef_])
        out[clf.classes_] = coef
        return out
    cols = {int(c): i for i, c in enumerate(clf.classes_)}
    present = np.array([c for c in range(n_classes) if (data.y_test == c).any() and c in cols], dtype=int)
    drop = permutation_importance(
        clf.predict_proba, data.x_test, data.y_test, [cols[c] for c in present], present, repeats, seed
    )
    out[present] = drop
    return out


def permutation_importance(
    predict_proba,
    x: np.ndarray,
    y: np.ndarray,
    columns: list[int],
    classes: np.ndarray,
    repeats: int,
    seed: int,
    chunk: int = 32,
) -> np.ndarray:
    """(len(classes), n_genes) mean fall, over ``repeats`` seeded permutations of one gene's values across the
    samples, of the mean probability that each class's samples get for their class (``columns``: that class's
    column of ``predict_proba``). The same quantity as scikit-learn's ``permutation_importance`` with a per-class
    scorer, but the permuted copies of ``chunk`` genes go through the model in one call: a random forest's
    per-call overhead otherwise dominates (one call per gene and repeat, 10x slower on the demo)."""
    rng = np.random.default_rng(seed)
    n, n_genes = x.shape
    masks = [y == c for c in classes]

    def score(proba: np.ndarray) -> np.ndarray:
        return np.array([proba[m, col].mean() for m, col in zip(masks, columns, strict=False)])

    base = score(predict_proba(x))
    drops = np.zeros((len(classes), n_genes))
    for _ in range(repeats):
        perms = [rng.permutation(n) for _ in range(n_genes)]
        for start in range(0, n_genes, chunk):
            genes = range(start, min(start + chunk, n_genes))
            stacked = np.repeat(x[None], len(genes), axis=0)
            for j, g in enumerate(genes):
                stacked[j, :, g] = x[perms[g], g]
            proba = predict_proba(stacked.reshape(-1, x.shape[1])).reshape(len(genes), n, -1)
            for j, g in enumerate(genes):
                drops[:, g] += base - score(proba[j])
    return drops / repeats


def plot_de_overlap(tables: dict[str, pd.DataFrame], k: int, path: Path, title: str) -> None:
    """Heat map: rankings (rows) x classes (columns), overlap of the top-k with the Wilcoxon DE top-k; a cell whose
    overlap is no better than chance (permutation p >= 0.05) is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tables)
    classes = list(dict.fromkeys(c for t in tables.values() for c in t["class"]))
    grid = np.full((len(names), len(classes)), np.nan)
    chance = np.zeros_like(grid, dtype=bool)
    for i, n in enumerate(names):
        t = tables[n]
        t = t[(t["de_method"] == "wilcoxon") & (t["k"] == k)].set_index("class")
        for j, c in enumerate(classes):
            if c in t.index:
                grid[i, j], chance[i, j] = t.at[c, "overlap"] / k, not t.at[c, "better_than_chance"]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(classes), 0.9 + 0.42 * len(names)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(names)):
        for j in range(len(classes)):
            if np.isfinite(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}" + ("*" if chance[i, j] else ""),
                    ha="center",
                    va="center",
                    color="white" if grid[i, j] < 0.6 else "black",
                    fontsize=8,
                )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, fraction=0.04, label=f"share of the top {k} also in the DE top {k}")
    ax.set_title(title + "\n(* no better than random gene sets, permutation p >= 0.05)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_keep_remove(tables: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """Held-out macro-F1 against k: each ranking's kept genes (solid) and remaining genes (dashed), beside random
    genes (grey band: mean +- sd), the DE top-k genes (black) and all genes (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2), sharey=True)
    first, ref = next(iter(tables.items()))
    for ax, mode in zip(axes, ("keep", "remove"), strict=False):
        k = ref["k"].to_numpy()
        mean, sd = ref[f"random_{mode}_f1"].to_numpy(), ref[f"random_{mode}_sd"].to_numpy()
        # each method keeps its own number of genes at a k (the union of the classes' top-k); the band is drawn for
        # the first method's, and every flag compares a method with random sets of its own size (retraining.csv)
        ax.fill_between(k, mean - sd, mean + sd, color="0.8", label=f"random genes, as many as {first}'s (mean +- sd)")
        ax.plot(k, mean, color="0.5", lw=1)
        ax.plot(k, ref[f"de_{mode}_f1"], color="black", lw=2, marker="s", label="DE top-k (Wilcoxon)")
        ax.axhline(ref["all_genes_f1"].iat[0], color="black", ls=":", lw=1, label="all genes")
        for name, t in tables.items():
            ax.plot(t["k"], t[f"{mode}_f1"], marker="o", lw=1.3, ls="-" if mode == "keep" else "--", label=name)
        ax.set_xscale("log")
        ax.set_xticks(k, [str(v) for v in k])
        ax.set_xlabel("k (union of the classes' top-k genes)")
        ax.set_title(
            ("trained on the top genes only (keep)" if mode == "keep" else "trained without them (remove)"), fontsize=9
        )
    axes[0].set_ylabel("held-out macro-F1")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def assess_model(
    name: str,
    ctx: Context,
    spec: dict,
    genes,
    symbols,
    classes: list[str],
    rankings: dict[str, tuple[np.ndarray, bool]],
    folder: Path,
) -> dict | None:
    """Every ranking of one model (method -> (class scores, signed)) checked three ways; writes
    ``folder/{de_overlap,retraining,enrichment}.csv`` and two figures; returns the JSON entry (None: no gene values
    to compare with), with the tables under ``"tables"`` and the DE result under ``"de"`` for the .h5ad."""
    t0 = time.time()
    p = ctx.p.model_copy(
        update={
            "de_k": usable_ks(ctx.p, "de_k", len(genes), name),
            "retrain_k": usable_ks(ctx.p, "retrain_k", len(genes), name),
            "enrichment_k": usable_ks(ctx.p, "enrichment_k", len(genes), name)[0],
        }
    )
    prepared = ctx.prepared(spec, genes, symbols, classes)
    if prepared is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    de_top = de_matrix(prepared[1], classes, len(genes))
    results = {
        m: assess_ranking(scores, signed, prepared, p, ctx.seed, classes, de_top)
        for m, (scores, signed) in rankings.items()
    }
    # the DE ranking's own enrichment, the reference of the methods'
    results_de = assess_ranking(de_top, True, prepared, p, ctx.seed, classes) if prepared[3] is not None else {}
    tables = {}
    for key in ("de_overlap", "retraining", "enrichment"):
        parts = [r[key].assign(method=m) for m, r in results.items() if key in r]
        if key == "enrichment" and "enrichment" in results_de:
            parts.append(results_de["enrichment"].assign(method="de_wilcoxon"))
        if parts:
            table = pd.concat(parts, ignore_index=True)
            table = table[["method"] + [c for c in table.columns if c != "method"]]
            table.to_csv(folder / f"{key}.csv", index=False)
            tables[key] = table
    plot_de_overlap(
        {m: r["de_overlap"] for m, r in results.items()},
        p.de_k[0],
        folder / "figures" / "de_overlap.png",
        f"{name}: each class's top {p.de_k[0]} attributed genes vs its top {p.de_k[0]} DE genes (training split)",
    )
    plot_keep_remove(
        {m: r["retraining"] for m, r in results.items()},
        folder / "figures" / "keep_remove.png",
        f"{name}: {p.retrain_model} retrained on the training split with or without each method's "
        "top genes, scored on the held-out test split",
    )
    entry = {
        "n_train": int(len(prepared[0].y_train)),
        "de_methods": list(DE_METHODS),
        "retrain_model": p.retrain_model,
        "methods": {m: summarise(r, p) for m, r in results.items()},
    }
    if "enrichment" in results_de:
        entry["de_enrichment"] = json_safe(enrichment_summary(results_de["enrichment"]))
    for m, s in entry["methods"].items():
        flags = [
            f for f in ("de_no_better_than_chance", "keep_no_better_than_random", "removal_costs_nothing") if s.get(f)
        ]
        log.info(
            "%s %s: DE overlap@%d %.1f of %d (Wilcoxon)%s",
            name,
            m,
            p.de_k[0],
            s["de_overlap"]["wilcoxon"][f"top_{p.de_k[0]}"]["mean_overlap"],
            p.de_k[0],
            f"; FLAGGED: {', '.join(flags)}" if flags else "",
        )
    entry["seconds"] = round(time.time() - t0, 2)
    entry["tables"], entry["de"] = tables, prepared[1]
    return entry
