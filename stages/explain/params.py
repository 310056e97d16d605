"""Config section read by explain."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from shared.config import InputFile, Output, Section, StageSpec
from shared.logs import get_logger

from .methods import METHODS, option_sections, owners

log = get_logger("stages.explain")


#: the methods users can choose: stages/explain/methods.py declares each once
MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]


class Faithfulness(Section):
    """Deletion and insertion curves: input values removed (or added) in the order a method ranks them."""

    #: false: no deletion and insertion curves
    enabled: bool = True
    #: points on each curve (fractions 0, 1/steps, ..., 1 of the input values)
    steps: int = Field(20, ge=2)
    #: held-out test samples used (the first of each class in turn), to bound the cost
    max_samples: int = Field(100, ge=2)
    #: deletion AUC below the random order's by less than this is "no better than random"
    margin: float = Field(0.0, ge=0)


class Sanity(Section):
    """The model-randomisation test of Adebayo et al. (2018)."""

    #: false: no model-randomisation test
    enabled: bool = True
    #: held-out test samples compared between the trained and the randomised model
    max_samples: int = Field(32, ge=2)
    #: Spearman correlation (of absolute attributions) between the trained and the fully randomised model at or
    #: above which a method is flagged "insensitive to the model"
    threshold: float = Field(0.5, gt=0, le=1)


class Stability(Section):
    """How much a class's top genes depend on the fold model explained and, for SmoothGrad, on the noise draws."""

    #: false: no fold-model or seed comparison
    enabled: bool = True
    #: held-out test samples explained by each fold model
    max_samples: int = Field(64, ge=2)
    #: runs of a stochastic method (SmoothGrad) with different seeds, compared pairwise
    draws: int = Field(3, ge=2)


class PerSample(Section):
    """Per-sample results: the top-genes table, the figure of a few samples, and the per-sample trust table (which
    samples' prediction or map not to trust, and why)."""

    #: genes listed per sample in sample_top_genes.csv
    top_k: int = Field(10, ge=1)
    #: a gene is listed only if its score is at least this fraction of the sample's largest score
    threshold: float = Field(0.1, ge=0, le=1)
    #: samples per class in figures/samples.png (input beside its map, top genes circled); 0: no figure
    figure_per_class: int = Field(2, ge=0)
    #: attributions.npy and sample_genes.npy (every explained sample's input-shaped and gene arrays, per method) are
    #: written when at most this many samples are explained; above it they are not (the class means, rankings,
    #: sample_top_genes.csv and the h5ad layers always are)
    arrays_max_samples: int = Field(50_000, ge=0)
    #: false: no per-sample trust table ({model}/sample_trust.csv, its obs columns; stages/explain/sample_trust.py)
    trust: bool = True
    #: the method whose per-sample maps are compared between fold models and whose deletion AUC is read; default the
    #: first gradient-based method in explain.methods
    trust_method: MethodName | None = None
    #: samples (classes in turn) explained by every fold model for the per-sample fold agreement (of their top_k
    #: genes); the others have none. 0: none
    trust_max_samples: int = Field(256, ge=0)
    #: a sample whose top_k genes the fold models share no more of than random gene lists would (the chance of as
    #: many shared genes at or above this) is flagged "fold models disagree on its top genes"
    fold_agreement_alpha: float = Field(0.05, gt=0, lt=1)
    #: nearest measured training samples listed per sample (gene values the model read, Euclidean)
    neighbours: int = Field(3, ge=1)
    #: a sample farther from its nearest training sample than this quantile of the training samples' own
    #: leave-one-out nearest distances is flagged "unlike any training sample"
    ood_quantile: float = Field(0.99, gt=0, le=1)


class Shortcuts(Section):
    """The shortcut audit (shared.evaluation.shortcuts): whether each method's top genes, and the model's own
    predictions, predict a nuisance variable (the group key; preprocess's covariates: expression.covariates and the
    library size) better than chance and better than they predict the class, on the held-out test rows."""

    #: false: no shortcut audit
    enabled: bool = True
    #: genes per class whose union is a method's feature set
    top_k: int = Field(10, ge=1)
    #: permutations of each target for its p-value (the smallest p is 1 / (permutations + 1))
    permutations: int = Field(200, ge=1)
    #: cross-validation folds on the held-out rows (fewer where a category has fewer rows)
    folds: int = Field(5, ge=2)
    #: significance level, split over the nuisance variables tested (Bonferroni)
    alpha: float = Field(0.05, gt=0, lt=1)


class LayoutSensitivity(Section):
    """Does the explanation survive a change of layout? When the trainer trained models on other layouts of the
    genes (preprocess.layout_sensitivity), each is explained with one method and its class gene rankings are set
    against the main model's (shared.evaluation.layout_sensitivity); no trust checks are run on them."""

    #: false: the layout models are not explained
    enabled: bool = True
    #: the one method the layout models are explained with (one of explain.methods); null: the first of
    #: explain.methods
    method: MethodName | None = None  # type: ignore[valid-type]
    #: a class's top genes are marked "not robust to layout" when the median over the layouts of the share of its
    #: top_k genes the layout's model also ranks in its top_k is below this: most of the list would not be reported
    #: again after a change of layout
    threshold: float = Field(0.5, gt=0, le=1)


class Biology(Section):
    """Do the explanations agree with biology? DE beside every ranking, keep/remove retraining, gene-set
    enrichment (stages/explain/biology/)."""

    #: false: none of the biology checks
    enabled: bool = True
    #: top-k sizes compared with the differential-expression top-k (overlap, Jaccard, permutation p)
    de_k: list[int] = Field(default_factory=lambda: [20, 50], min_length=1)
    #: random gene sets drawn for the permutation p-value of an overlap
    permutations: int = Field(1000, ge=100)
    #: k of the keep/remove retraining (the union of the classes' top-k genes is kept or removed)
    retrain_k: list[int] = Field(default_factory=lambda: [10, 20, 50, 100], min_length=1)
    #: the cheap classifier retrained on the kept or remaining genes (train_torch's baselines' settings)
    retrain_model: Literal["logistic_regression", "random_forest"] = "logistic_regression"
    #: seeded draws of random genes beside each k (mean and spread shown)
    random_draws: int = Field(5, ge=2)
    #: a removal that lowers held-out macro-F1 by less than this at every k "costs nothing" (flagged)
    min_drop: float = Field(0.01, ge=0)
    #: the baselines' own importances beside the methods: logistic-regression coefficients, random-forest
    #: permutation importance on the held-out test split (refit on the whole training split)
    baselines: bool = True
    #: permutation repeats of the random forest's importance
    permutation_repeats: int = Field(3, ge=1)
    #: gene sets (GMT: MSigDB hallmarks, cell-type markers...) for the over-representation of each class's top genes;
    #: nothing is downloaded
    gene_sets: InputFile | None = None
    #: genes per class tested for over-representation (each class's top genes)
    enrichment_k: int = Field(20, ge=1)
    #: sets with fewer genes in the data are left out
    min_set_size: int = Field(3, ge=1)


class ExplainSettings(Section):
    """explain's settings other than the methods' options."""

    #: attribution methods run on every model (docs: Explanations, the methods table)
    methods: list[MethodName] = Field(default_factory=lambda: ["saliency"], min_length=1)
    #: explain only the held-out test samples the model classifies correctly (as the GTEx reference did)
    correct_only: bool = False
    #: samples attributed per forward/backward pass
    batch_size: int = Field(64, ge=1)
    #: samples read, attributed and written at a time (rounded up to whole batches): memory is bounded by a chunk
    #: whatever the number of samples explained
    chunk_size: int = Field(1024, ge=1)
    #: storage type of the per-sample attributions (attributions.npy, sample_genes.npy, the h5ad layers); float16
    #: halves the files (3 significant digits); class means and rankings are computed in float64 either way
    attribution_dtype: Literal["float32", "float16"] = "float32"
    #: genes (or regions) listed per class in top_genes.csv
    top_k: int = Field(20, ge=1)
    #: known marker genes, a CSV with columns class, gene (the synthetic fixtures write their planted ones)
    markers: InputFile | None = None
    #: k of the planted-marker precision@k when markers are given
    precision_k: int = Field(10, ge=1)
    faithfulness: Faithfulness = Field(default_factory=Faithfulness)
    sanity: Sanity = Field(default_factory=Sanity)
    stability: Stability = Field(default_factory=Stability)
    per_sample: PerSample = Field(default_factory=PerSample)
    shortcuts: Shortcuts = Field(default_factory=Shortcuts)
    layout_sensitivity: LayoutSensitivity = Field(default_factory=LayoutSensitivity)
    biology: Biology = Field(default_factory=Biology)

    @model_validator(mode="after")
    def _trust_method_is_run(self) -> ExplainSettings:
        """per_sample.trust_method names one of the methods run."""
        chosen = self.per_sample.trust_method
        if chosen is not None and chosen not in self.methods:
            raise ValueError(
                f"per_sample.trust_method: {chosen!r} is not in explain.methods ({', '.join(self.methods)})"
            )
        return self

    @model_validator(mode="after")
    def _options_of_chosen_methods(self) -> ExplainSettings:
        """Options set for a method that is not run are named in a warning (a typo, or a method left out)."""
        for key, section in option_sections().items():
            methods = owners(key)
            # non-default options (a resolved config lists every section with its defaults)
            if getattr(self, key) != section() and not set(methods) & set(self.methods):
                log.warning(
                    "explain.%s is set but no method it applies to (%s) is in explain.methods; it is unused",
                    key,
                    " or ".join(methods),
                )
        return self

    @model_validator(mode="after")
    def _layout_method(self) -> ExplainSettings:
        """The layout models are compared with the main model's ranking of the same method, so it must be run."""
        method = self.layout_sensitivity.method
        if method is not None and method not in self.methods:
            raise ValueError(
                f"explain.layout_sensitivity.method: '{method}' is not in explain.methods ({', '.join(self.methods)}); "
                "the main model's ranking by it is what the layouts are compared with: add it there or choose one"
            )
        return self

    @property
    def layout_method(self) -> str:
        """The method the layout models are explained with."""
        return self.layout_sensitivity.method or self.methods[0]

    def options(self, method: str):
        """The options section ``method`` reads (Grad-CAM's serves Guided Grad-CAM too), or None."""
        key = METHODS[method].options_key
        return getattr(self, key) if key else None


#: explain's config section: the settings above and one options section per method that has options
#: (explain.smoothgrad, explain.integrated_gradients, ...), made from the methods' declarations
Explain = create_model(
    "Explain",
    __base__=ExplainSettings,
    __module__=__name__,
    **{key: (section, Field(default_factory=section)) for key, section in option_sections().items()},
)


STAGE = StageSpec(
    name="explain",
    provides=("explanations",),
    requires=("classifiers",),
    sections={"explain": Explain},
    outputs=(
        Output(
            "metrics.json",
            "per model and method: its description, whether it is signed, marker precision, faithfulness, sanity "
            "and stability, for volumes the localisation and the sub-regions, the biology checks (DE overlap, "
            "keep/remove, enrichment, flags); the shortcut audit and the layout-sensitivity check per model; the "
            "models left unexplained and why; biology_seconds",
        ),
        Output(
            "{model}/{method}/attributions.npy",
            "(n_test, *input_shape) per-sample attributions of the true class (attribution_dtype)",
            when="n_explained <= per_sample.arrays_max_samples",
        ),
        Output("{model}/{method}/class_maps.npy", "(n_classes, *input_shape) class-mean attributions"),
        Output("{model}/{method}/figures/class_maps.png", "class means with the top genes circled (size by score)"),
        Output(
            "{model}/{method}/figures/samples.png",
            "per_sample.figure_per_class samples per class: the input "
            "beside its map, the sample's top genes circled and named",
            when="per_sample.figure_per_class > 0",
        ),
        Output(
            "{model}/{method}/sample_genes.npy",
            "(n_test, n_genes) per-sample gene attributions (attribution_dtype)",
            when="images with a pixel->gene map and n_explained <= per_sample.arrays_max_samples",
        ),
        Output(
            "{model}/{method}/gene_attributions.csv",
            "genes x classes class-mean gene attributions",
            when="genes known (vectors, or images with a gene map)",
        ),
        Output(
            "{model}/{method}/top_genes.csv", "class, rank, gene, score: the top_k genes per class", when="genes known"
        ),
        Output(
            "{model}/{method}/sample_top_genes.csv",
            "sample, class, prediction, gene, score, rank: each sample's top genes above the per_sample threshold",
            when="genes known",
        ),
        Output(
            "{model}/{method}/figures/top_genes_heatmap.png",
            "each class's top_k genes (rows) across all classes (columns)",
            when="genes known",
        ),
        Output(
            "{model}/{method}/marker_precision.csv",
            "precision and recall of the known markers among each class's top precision_k genes",
            when="explain.markers set",
        ),
        Output(
            "{model}/{method}/faithfulness.csv",
            "per sample: deletion and insertion AUC of the method's order and of a random order",
            when="faithfulness.enabled",
        ),
        Output(
            "{model}/{method}/figures/faithfulness.png",
            "mean deletion and insertion curves beside random",
            when="faithfulness.enabled",
        ),
        Output(
            "{model}/{method}/sanity.csv",
            "rank correlation of the trained and the randomised model's attributions, block by block and all at once",
            when="sanity.enabled",
        ),
        Output(
            "{model}/{method}/localisation.csv",
            "per exam: the share of the map's energy inside the tumour mask, the mask's share of the brain (chance), "
            "their ratio, the NIfTI map's path",
            when="volume inputs with masks",
        ),
        Output(
            "{model}/{method}/subregions.csv",
            "per exam and tumour sub-region it has (BraTS: NCR/NET, ED, ET): the map's energy share there, the "
            "region's share of the brain (chance), their ratio; volumes have no genes, hence no .h5ad",
            when="volume inputs with masks",
        ),
        Output(
            "{model}/{method}/nifti/*.nii.gz",
            "each exam's map on its own scan's grid",
            when="volume inputs with grids and n_explained <= per_sample.arrays_max_samples",
        ),
        Output(
            "{model}/{method}/figures/overlays.png",
            "per_sample.figure_per_class exams per class: the map over the FLAIR, the tumour outlined",
            when="volume inputs with masks and per_sample.figure_per_class > 0",
        ),
        Output(
            "{model}/sample_trust.csv",
            "per explained sample: label, prediction and its probability, conformal set and size, the fold models' "
            "shared fraction of its top genes, its deletion AUC beside its random order's, its nearest measured "
            "training samples (ids;labels;distances), whether they carry the prediction, the out-of-distribution flag, "
            "and distrust: the reasons not to trust its prediction or map ('' when none)",
            when="per_sample.trust",
        ),
        Output(
            "{model}/attributions.h5ad",
            "AnnData for scanpy: obs the test samples (label, prediction, conformal_set, conformal_set_size, and with "
            "per_sample.trust sample_trust.csv's columns), var the "
            "genes, one layer per method (every explained sample; "
            "attribution_dtype), varm class means, uns top genes and the "
            "trust figures, uns['shortcuts'] and uns['layout_sensitivity'] (JSON, when run); with biology.enabled "
            "uns['rank_genes_groups'] (Wilcoxon, "
            "training split, scanpy's layout), uns['rank_genes_groups_t-test'] and "
            "uns['biology'] (the three tables)",
            when="genes known",
        ),
        Output(
            "{model}/layout_sensitivity.csv",
            "model, layout, seed, embedding, genes_moved, accuracy, macro_f1, class, spearman and top_k_overlap with "
            "the main model's ranking, marker precision: the main model, its first fold model (the same-layout "
            "control) and each layout's model",
            when="the trainer trained models on other layouts (preprocess.layout_sensitivity)",
        ),
        Output(
            "{model}/biology/de_overlap.csv",
            "method, de_method, class, k: overlap of the top-k attributed and DE "
            "genes, Jaccard, permutation p, Spearman over all genes",
            when="biology.enabled and genes known; {model} = baselines for their own importances",
        ),
        Output(
            "{model}/biology/retraining.csv",
            "method, k: held-out macro-F1 of the cheap model with only (keep) and "
            "without (remove) the top-k genes, random and DE references",
            when="biology.enabled and genes known",
        ),
        Output(
            "{model}/biology/enrichment.csv",
            "method, class, gene_set: overlap, expected, odds ratio, "
            "hypergeometric p and BH-adjusted p of each class's top genes",
            when="biology.gene_sets set",
        ),
        Output(
            "{model}/biology/figures/de_overlap.png",
            "methods x classes: share of the top-k in the DE top-k, chance-level cells marked",
            when="biology.enabled",
        ),
        Output(
            "{model}/biology/figures/keep_remove.png",
            "held-out macro-F1 against k, keep and remove, beside random and DE genes",
            when="biology.enabled",
        ),
    ),
    description="attributions per test sample, class maps, gene rankings, marker precision",
)
