"""Per-sample trust: for each explained held-out sample, the signals that say whether its prediction or its map
should be trusted, gathered in one table (``{model}/sample_trust.csv``, the same columns in attributions.h5ad's obs)
with the reasons to distrust it, and their counts for metrics.json.

The signals, each computed on held-out samples only, against references from the training split:

- **Conformal set** (the trainer's ``test_conformal.csv``, shared.evaluation.conformal): a set of size other than
  one is a prediction the calibration does not support alone: empty (no class as probable as the true class was
  for the target share of the out-of-fold samples) or several classes (ambiguous).
- **Fold agreement on its top genes**: the sample explained by each fold model of the ensemble with one method
  (``per_sample.trust_method``; default the first gradient-based method configured), the top ``per_sample.top_k``
  genes under each (highest score first, as sample_top_genes.csv ranks them), and the **shared fraction**
  ``|A ∩ B| / k`` averaged over the pairs of fold models (the measure the stability check uses for class
  rankings; not Jaccard). When random gene lists would share as much (``agreement_p``: a hypergeometric tail, at
  or above ``per_sample.fold_agreement_alpha``), the sample's top genes depend on which training folds a model saw,
  not on the sample: the fold models disagree. Budgeted: ``per_sample.trust_max_samples`` samples (classes in turn,
  as the other checks choose theirs); the others NaN.
- **Deletion AUC** (the faithfulness check's faithfulness.csv for the same method, for the samples it used; NaN
  otherwise): the map is "no more faithful than random" when its deletion AUC is not below the sample's own random
  order's by more than ``faithfulness.margin``. One random order per sample: a noisy reference, read as a flag to
  look, not a test.
- **Nearest training samples**: the ``per_sample.neighbours`` nearest measured training samples (augmented copies
  left out: shared.dataset.measured_training_rows) by Euclidean distance in the gene values the model read (vectors
  as the model saw them, scale included; for images the gene values they were rendered from), with their ids,
  labels and distances. The neighbours "disagree with the prediction" unless more than half of them carry the
  predicted class (a strict majority: a 1-1-1 split among three is disagreement).
- **Out of distribution**: the distance to its nearest training sample above the ``per_sample.ood_quantile``
  quantile (default the 99th) of the training samples' own leave-one-out nearest-neighbour distances (each training
  sample's distance to the nearest *other* training sample). A test sample exchangeable with the training samples
  is so flagged with probability about 1 - quantile; one flagged is farther from every training sample than almost
  any training sample is from the rest.

Inputs without genes (volumes, sample-spot images with no pixel->gene map) get the conformal and faithfulness
columns only: their top elements are voxels or pixels, not genes, and Euclidean distance between raw volumes
measures anatomy and positioning more than the tumour the model classifies, so neither the top-k agreement nor the
neighbours would mean what they mean for expression (the table says so in ``not_computed``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import NearestNeighbors

from shared.artifacts import write_text_atomic
from shared.dataset import measured_training_rows, read_samples
from shared.logs import get_logger

from .attributions import attribute_batched, members
from .inputs import ExplainedModel, subset
from .methods import make_method
from .params import Explain
from .store import LazyRows

log = get_logger("stages.explain")

TABLE = "sample_trust.csv"
#: the methods that follow the gradient (the default trust method is the first of these configured)
GRADIENT_METHODS = (
    "saliency",
    "gradient",
    "input_x_gradient",
    "smoothgrad",
    "integrated_gradients",
    "gradient_shap",
    "deeplift",
)
#: the reasons to distrust a sample, as the ``distrust`` column and metrics.json name them
EMPTY_SET = "empty conformal set"
AMBIGUOUS_SET = "multi-class conformal set"
FOLDS_DISAGREE = "fold models disagree on its top genes"
UNFAITHFUL = "map no more faithful than random"
OOD = "unlike any training sample"
NEIGHBOURS_DISAGREE = "neighbours disagree with the prediction"
REASONS = (EMPTY_SET, AMBIGUOUS_SET, FOLDS_DISAGREE, UNFAITHFUL, OOD, NEIGHBOURS_DISAGREE)

COLUMNS = [
    "sample",
    "label",
    "prediction",
    "p_true_class",
    "p_prediction",
    "conformal_set",
    "conformal_set_size",
    "fold_top_k_shared",
    "fold_agreement_p",
    "deletion_auc",
    "random_deletion_auc",
    "map_beats_random",
    "neighbours",
    "neighbour_labels",
    "neighbour_distances",
    "nearest_distance",
    "neighbours_agree",
    "ood",
    "distrust",
]


# ------------------------------------------------------------------------------------------- the signals
def top_k_genes(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, n_genes) scores -> (n, k) indices of each row's ``k`` highest scores (NaN last, ties in index order)."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def fold_top_k_shared(per_model: list[np.ndarray], k: int) -> np.ndarray:
    """Each sample's mean over pairs of models of the shared fraction ``|A ∩ B| / k`` of their top ``k`` genes
    (``per_model``: one (n, n_genes) score array per fold model); NaN with fewer than two models."""
    if len(per_model) < 2:
        return np.full(len(per_model[0]) if per_model else 0, np.nan)
    k = min(k, per_model[0].shape[1])
    tops = [top_k_genes(s, k) for s in per_model]
    shared = []
    for i in range(len(tops)):
        for j in range(i + 1, len(tops)):
            shared.append([len(np.intersect1d(a, b)) / k for a, b in zip(tops[i], tops[j], strict=True)])
    return np.mean(shared, axis=0)


def agreement_p(shared: np.ndarray, k: int, n_genes: int, n_models: int) -> np.ndarray:
    """How likely random gene lists would share as much: for each sample's mean shared fraction over the pairs of
    ``n_models`` models, P(S >= its total shared count), S the sum over the pairs of independent hypergeometric
    overlaps of two random ``k``-gene lists out of ``n_genes`` (the pairs share models, so they are not independent;
    the sum is the usual approximation). NaN where ``shared`` is."""
    from scipy.stats import hypergeom

    pairs = n_models * (n_models - 1) // 2
    pmf = hypergeom.pmf(np.arange(k + 1), n_genes, k, k)
    total = pmf
    for _ in range(pairs - 1):
        total = np.convolve(total, pmf)
    tail = np.cumsum(total[::-1])[::-1]  # tail[s] = P(S >= s)
    shared = np.asarray(shared, dtype=float)
    counts = np.rint(np.nan_to_num(shared, nan=0.0) * k * pairs).astype(int).clip(0, len(tail) - 1)
    return np.where(np.isnan(shared), np.nan, tail[counts])


class TrainingNeighbours:
    """The measured training samples in the gene values the model read, for nearest-neighbour look-ups, and the
    out-of-distribution threshold: the ``quantile`` of their own leave-one-out nearest-neighbour distances."""

    def __init__(self, values: np.ndarray, quantile: float):
        self.values = np.asarray(values, dtype=np.float64)
        self.index = NearestNeighbors().fit(self.values)
        if len(self.values) > 1:
            loo, _ = self.index.kneighbors(self.values, n_neighbors=2)  # the first is each sample itself
            self.loo = loo[:, 1]
        else:
            self.loo = np.zeros(len(self.values))
        self.quantile = quantile
        self.threshold = float(np.quantile(self.loo, quantile)) if len(self.loo) else float("inf")

    def query(self, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, training indices), each (n, k), nearest first."""
        return self.index.kneighbors(np.asarray(values, dtype=np.float64), n_neighbors=min(k, len(self.values)))

    def out_of_distribution(self, nearest: np.ndarray) -> np.ndarray:
        """Whether each nearest-neighbour distance is above the threshold."""
        return np.asarray(nearest) > self.threshold


def neighbours_agree(neighbour_labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(n, k) neighbours' labels, (n,) predicted labels -> whether more than half the neighbours carry the
    prediction."""
    neighbour_labels = np.asarray(neighbour_labels)
    votes = (neighbour_labels == np.asarray(predicted)[:, None]).sum(1)
    return votes * 2 > neighbour_labels.shape[1]


def reasons(table: pd.DataFrame, fold_alpha: float) -> pd.Series:
    """The ``distrust`` column: each row's reasons joined by '; ' ('' when none); a signal not computed for a row
    (NaN, missing) is no reason."""
    size = pd.to_numeric(table["conformal_set_size"], errors="coerce").astype(float)
    flags = {
        EMPTY_SET: size == 0,
        AMBIGUOUS_SET: size > 1,
        FOLDS_DISAGREE: table["fold_agreement_p"] >= fold_alpha,
        UNFAITHFUL: table["map_beats_random"].astype("boolean").eq(False),
        OOD: table["ood"].astype("boolean"),
        NEIGHBOURS_DISAGREE: table["neighbours_agree"].astype("boolean").eq(False),
    }
    flags = pd.DataFrame(
        {k: pd.Series(v).astype("boolean").fillna(False).to_numpy(bool) for k, v in flags.items()}, index=table.index
    )
    return flags.apply(lambda row: "; ".join(r for r in REASONS if row[r]), axis=1).astype(str)


# ------------------------------------------------------------------------------------------- the table
def choose_method(settings: Explain, ran: list[str]) -> str | None:
    """The method of the fold agreement and the deletion AUC: ``per_sample.trust_method``, else the first
    gradient-based method that ran, else the first that ran."""
    chosen = settings.per_sample.trust_method
    if chosen is not None:
        return chosen if chosen in ran else None
    return next((m for m in ran if m in GRADIENT_METHODS), ran[0] if ran else None)


def training_values(exp_dir: Path, spec: dict) -> tuple[np.ndarray, pd.DataFrame] | None:
    """The measured training samples' gene values as the model read them (vectors scaled as its input; images: the
    gene values they were rendered from) and their samples.csv rows; None when the images' gene values are not
    stored."""
    inp = spec["input"]
    samples = read_samples(exp_dir / inp["samples"])
    rows = measured_training_rows(samples)
    if inp["kind"] == "vector":
        values = LazyRows(exp_dir / inp["array"], rows)[np.arange(len(rows))] * float(inp.get("scale", 1.0))
    elif inp.get("gene_values"):
        values = LazyRows(exp_dir / inp["gene_values"], rows)[np.arange(len(rows))]
    else:
        return None
    return np.asarray(values, dtype=np.float32), samples.iloc[rows].reset_index(drop=True)


def per_fold_agreement(explained: ExplainedModel, method_name: str, settings: Explain, rows: np.ndarray) -> np.ndarray:
    """The shared fraction of each of ``rows``' top genes between every pair of fold models."""
    data = explained.data
    scores = []
    for i, member in enumerate(members(explained.model)):
        torch.manual_seed(explained.seed)
        method = make_method(method_name, member, settings, data, explained.device, explained.seed)
        attr = attribute_batched(
            method,
            data.array[rows],
            data.labels[rows],
            explained.device,
            settings.batch_size,
            f"{explained.name} {method_name} fold model {i + 1}",
            scale=data.scale,
        )
        scores.append(data.to_genes(attr, rows))
    return fold_top_k_shared(scores, settings.per_sample.top_k)


def sample_trust(
    explained: ExplainedModel,
    settings: Explain,
    exp_dir: Path,
    spec: dict,
    conformal: pd.DataFrame | None,
    ran: list[str],
    out: Path,
) -> tuple[pd.DataFrame, dict]:
    """Every explained sample's signals and reasons (the table, written to ``out / sample_trust.csv``) and the
    summary for metrics.json: n, the count per reason, the thresholds, which signals were computed for how many
    samples and why not where not."""
    t0 = time.time()
    ps = settings.per_sample
    data, classes = explained.data, np.asarray(explained.classes)
    n = len(data.labels)
    predicted = data.proba.argmax(1)
    table = pd.DataFrame(
        {
            "sample": data.samples["sample"].astype(str).to_numpy(),
            "label": classes[data.labels],
            "prediction": classes[predicted],
            "p_true_class": data.proba[np.arange(n), data.labels],
            "p_prediction": data.proba[np.arange(n), predicted],
        }
    )
    not_computed: dict[str, str] = {}
    table["conformal_set"], table["conformal_set_size"] = "", pd.array([pd.NA] * n, dtype="Int64")
    if conformal is None:
        not_computed["conformal"] = "the trainer wrote no test_conformal.csv"
    else:
        by_sample = conformal.assign(sample=conformal["sample"].astype(str)).set_index("sample")
        found = table["sample"].isin(by_sample.index)
        table.loc[found, "conformal_set"] = by_sample["set"].reindex(table["sample"][found]).fillna("").to_numpy()
        table["conformal_set_size"] = pd.array(by_sample["set_size"].reindex(table["sample"]).to_numpy(), dtype="Int64")
        if not found.all():
            not_computed["conformal"] = f"{int((~found).sum())} samples not in test_conformal.csv"
    method = choose_method(settings, ran)
    table["fold_top_k_shared"] = table["fold_agreement_p"] = np.nan
    table["deletion_auc"] = table["random_deletion_auc"] = np.nan
    table["map_beats_random"] = pd.array([pd.NA] * n, dtype="boolean")
    n_folds = len(members(explained.model))
    genes = data.gene_names is not None
    fold_rows = subset(data.labels, ps.trust_max_samples) if ps.trust_max_samples else np.zeros(0, int)
    if method is None:
        not_computed["fold_agreement"] = not_computed["faithfulness"] = (
            f"per_sample.trust_method {ps.trust_method} did not run" if ps.trust_method else "no method ran"
        )
    else:
        if not genes:
            not_computed["fold_agreement"] = "the inputs have no genes (see stages/explain/sample_trust.py)"
        elif n_folds < 2:
            not_computed["fold_agreement"] = "one model: no fold models to compare"
        elif len(fold_rows):
            shared = per_fold_agreement(explained, method, settings, fold_rows)
            table.loc[fold_rows, "fold_top_k_shared"] = shared
            k = min(ps.top_k, len(data.gene_names))
            table.loc[fold_rows, "fold_agreement_p"] = agreement_p(shared, k, len(data.gene_names), n_folds)
        faith_csv = out / method / "faithfulness.csv"
        if faith_csv.is_file():
            faith = pd.read_csv(faith_csv, dtype={"sample": str}).set_index("sample")
            table["deletion_auc"] = faith["deletion_auc"].reindex(table["sample"]).to_numpy()
            table["random_deletion_auc"] = faith["random_deletion_auc"].reindex(table["sample"]).to_numpy()
            done = table["deletion_auc"].notna().to_numpy()
            beats = table["deletion_auc"] < table["random_deletion_auc"] - settings.faithfulness.margin
            table["map_beats_random"] = pd.array(np.where(done, beats, pd.NA), dtype="boolean")
        else:
            not_computed["faithfulness"] = "explain.faithfulness is disabled"
    for column in ("neighbours", "neighbour_labels", "neighbour_distances"):
        table[column] = ""
    table["nearest_distance"] = np.nan
    table["neighbours_agree"] = table["ood"] = pd.array([pd.NA] * n, dtype="boolean")
    threshold = None
    training = training_values(exp_dir, spec) if genes else None
    if not genes:
        not_computed["neighbours"] = "the inputs have no genes (see stages/explain/sample_trust.py)"
    elif training is None or not len(training[1]):
        not_computed["neighbours"] = "no measured training gene values are stored (preprocess.save_vectors)"
    else:
        values, train_samples = training
        index = TrainingNeighbours(values, ps.ood_quantile)
        threshold = index.threshold
        ids = train_samples["sample"].astype(str).to_numpy()
        train_labels = train_samples["label_index"].to_numpy()
        test = data.array if data.kind == "vector" else data.gene_values
        scale = data.scale if data.kind == "vector" else 1.0
        dist, idx = [], []
        for start in range(0, n, settings.chunk_size):
            d, i = index.query(np.asarray(test[start : start + settings.chunk_size], np.float64) * scale, ps.neighbours)
            dist.append(d)
            idx.append(i)
        dist, idx = np.concatenate(dist), np.concatenate(idx)
        table["neighbours"] = [";".join(ids[r]) for r in idx]
        table["neighbour_labels"] = [";".join(classes[train_labels[r]]) for r in idx]
        table["neighbour_distances"] = [";".join(f"{v:.4g}" for v in r) for r in dist]
        table["nearest_distance"] = dist[:, 0]
        table["neighbours_agree"] = pd.array(neighbours_agree(train_labels[idx], predicted), dtype="boolean")
        table["ood"] = pd.array(index.out_of_distribution(dist[:, 0]), dtype="boolean")
    table["distrust"] = reasons(table, ps.fold_agreement_alpha)
    table = table[COLUMNS]
    write_table(table, out / TABLE)
    counts = {r: int(table["distrust"].str.contains(r, regex=False).sum()) for r in REASONS}
    summary = {
        "n": int(n),
        "n_distrusted": int((table["distrust"] != "").sum()),
        "reasons": counts,
        "method": method,
        "top_k": ps.top_k,
        "agreement": "mean over pairs of fold models of the shared fraction of the top-k genes, |A and B| / k",
        "n_fold_agreement": int(table["fold_top_k_shared"].notna().sum()),
        "n_faithfulness": int(table["deletion_auc"].notna().sum()),
        "n_neighbours": int(table["nearest_distance"].notna().sum()),
        "thresholds": {
            "fold_agreement_alpha": ps.fold_agreement_alpha,
            "faithfulness_margin": settings.faithfulness.margin,
            "neighbours": ps.neighbours,
            "ood_quantile": ps.ood_quantile,
            "ood_distance": threshold,
        },
        "table": TABLE,
        "seconds": round(time.time() - t0, 2),
    }
    if not_computed:
        summary["not_computed"] = not_computed
    log.info(
        "%s: per-sample trust: %d of %d samples to distrust (%s)",
        explained.name,
        summary["n_distrusted"],
        n,
        ", ".join(f"{r}: {c}" for r, c in counts.items() if c) or "none",
    )
    return table, summary


def write_table(table: pd.DataFrame, path: Path) -> None:
    """The table written under a temporary name and renamed into place."""
    write_text_atomic(path, table.to_csv(index=False))


def obs_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table as obs columns of attributions.h5ad, indexed by sample, less the columns obs has from the start
    (label, prediction, p_true_class); text as text, the yes/no signals as nullable booleans and the set size as a
    nullable integer (anndata's nullable encodings)."""
    return table.set_index("sample").drop(columns=["label", "prediction", "p_true_class"])
