"""Config sections read by preprocess: ``expression`` (the input) and ``preprocess`` (what to do with it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from shared.config import InputDir, InputFile, Output, Section, StageSpec

#: covariates.csv's own columns (the sample id and the QC covariates preprocess computes): not metadata names
RESERVED_COVARIATES = ("sample", "total_counts", "n_genes_by_counts")


class Expression(Section):
    """A transcriptomic input, as the public source ships it.

    Formats: ``h5ad`` (X, a ``layer`` or ``.raw``; ``label_key``/``group_key`` are obs columns); ``csv``/``tsv``
    (a matrix, samples x genes or genes x samples, plus a ``labels`` table whose first column, or
    ``sample_column``, holds the sample ids; a Single Cell Portal metadata file's ``TYPE`` row is skipped);
    ``gct`` (GTEx v8 read counts: ``path`` and any ``more_paths`` are GCT files, per tissue or all tissues;
    ``labels`` the sample-attribute table, ``label_key`` its column, e.g. SMTSD; ``phenotypes`` the
    subject-phenotype table, whose columns (SEX, AGE, DTHHRDY) serve as labels or groups through each sample's
    donor); ``tcga`` (a genes x samples matrix, e.g. the pan-cancer one, plus a ``labels`` table sample -> tumour
    type); ``geo`` (``labels`` a GEO series matrix, ``label_key`` one of its characteristics, e.g. subgroup;
    ``path`` the same file when its data table holds the values, else the series' supplementary matrix, genes x
    samples, whose sample columns are matched to a ``!Sample_`` field); ``gdc`` (``path`` the GDC cart's sample
    sheet, ``files_dir`` the folder of the STAR gene-counts files, ``counts_column`` the value column).
    """

    #: the expression file (h5ad, a matrix, a GDC sample sheet, a GEO series matrix or supplementary matrix)
    path: InputFile
    format: Literal["h5ad", "csv", "tsv", "gct", "tcga", "geo", "gdc"] = "h5ad"
    #: obs column (h5ad) or column of the labels table
    label_key: str
    #: optional: splits never cut a group
    group_key: str | None = None
    #: optional: further sample-metadata columns (batch, sex, sequencing centre, ...) carried to the dataset's
    #: covariates.csv for explain's shortcut audit; looked up where label_key is (h5ad obs, the labels table or GTEx
    #: phenotypes, the GEO characteristics, the GDC sample sheet); missing values are allowed (left empty)
    covariates: list[str] = Field(default_factory=list)
    #: h5ad: use this layer instead of X
    layer: str | None = None
    #: h5ad: or use .raw
    use_raw: bool = False
    #: optional: file of gene ids to keep (ENSEMBL version suffixes ignored)
    gene_filter: InputFile | None = None
    #: what the values are, as the source publishes them: counts (raw reads or TPM: scaled to preprocess.target_sum
    #: per sample, then log1p), log1p (natural log of normalised values, e.g. scanpy's X: used as they are),
    #: log2_tpm10 (log2(TPM/10+1), Neftel et al.'s convention for GSE131928: turned into ln(TPM/10+1)), normalized
    #: (anything else already normalised, negatives allowed: array intensities, batch-corrected RSEM: used as they are)
    scale: Literal["counts", "log1p", "log2_tpm10", "normalized"] = "counts"
    #: gct: further per-tissue files, concatenated by samples
    more_paths: list[InputFile] = Field(default_factory=list)
    #: csv/tsv/gct/tcga: the table of sample id -> label (and group); geo: the series matrix
    labels: InputFile | None = None
    #: the labels table's sample-id column (default: its first; gdc: File Name; geo: the !Sample_ field that names
    #: the matrix's columns, found by matching)
    sample_column: str | None = None
    #: csv/tsv: samples_x_genes | genes_x_samples | auto (matched against the labels)
    orientation: Literal["auto", "samples_x_genes", "genes_x_samples"] = "auto"
    #: GTEx subject phenotypes (GTEx_Analysis_v8_Annotations_SubjectPhenotypesDS.txt), joined by donor (SUBJID)
    phenotypes: InputFile | None = None
    #: gdc: the folder the STAR counts files were downloaded into (<file id>/<file name>, or flat)
    files_dir: InputDir | None = None
    #: gdc: the STAR counts column used as the value (unstranded read counts; tpm_unstranded is also scale: counts)
    counts_column: Literal[
        "unstranded", "stranded_first", "stranded_second", "tpm_unstranded", "fpkm_unstranded", "fpkm_uq_unstranded"
    ] = "unstranded"
    #: tcga, gdc: the TCGA sample-type codes kept (characters 14-15 of a barcode or Sample ID): 01 primary solid
    #: tumour, 03 primary blood-derived cancer; the others (06 metastatic, 10-19 normals, ...) are left out and
    #: counted, since a patient's label (or the cart's Project ID) would otherwise be given to its normal tissue
    sample_types: list[Annotated[str, StringConstraints(pattern=r"^\d\d$")]] = Field(
        default_factory=lambda: ["01", "03"], min_length=1
    )
    #: table formats: error stops on a missing value (NaN, NA, empty); drop_genes leaves out every gene with one
    #: (the TCGA pan-cancer matrix holds NA for some genes)
    missing: Literal["error", "drop_genes"] = "error"

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "normalized" in data:
            raise ValueError(
                "expression.normalized is now expression.scale: write scale: normalized for normalized: true, "
                "scale: counts for false (or log1p, log2_tpm10: see docs/reference/configuration.md)"
            )
        return data

    @field_validator("covariates")
    @classmethod
    def _covariates(cls, names: list[str], info: ValidationInfo) -> list[str]:
        """A covariate is a nuisance variable the model's genes should not predict, so never the label itself; its
        name must not clash with covariates.csv's own columns; repeats are dropped."""
        label_key = info.data.get("label_key")
        for name in names:
            if name == label_key:
                raise ValueError(
                    f"'{name}' is expression.label_key itself: the label is what the genes should predict, a "
                    "covariate what they should not; remove it from covariates"
                )
            if name in RESERVED_COVARIATES:
                raise ValueError(
                    f"'{name}' is a column covariates.csv writes itself ({', '.join(RESERVED_COVARIATES)}); "
                    "rename that metadata column"
                )
        return list(dict.fromkeys(names))

    def metadata_keys(self) -> list[tuple[str, str]]:
        """(config key, column name) of every sample-metadata column a format looks up: label_key, group_key when
        set, then each covariate; each loader checks and reads these, so a new kind of column needs no new case."""
        keys = [("label_key", self.label_key)]
        if self.group_key is not None:
            keys.append(("group_key", self.group_key))
        return keys + [("covariates", name) for name in self.covariates]

    @property
    def negatives_ok(self) -> bool:
        """Only values declared normalised may be negative (array intensities, batch-corrected values)."""
        return self.scale == "normalized"


#: tsne: openTSNE (FFT-accelerated from 10,000 genes up); tsne_sklearn: scikit-learn's Barnes-Hut t-SNE, what
#: pyDeepInsight runs (slower, kept as the reference); pca, kpca (RBF kernel PCA); umap (umap-learn). Every one
#: runs on the genes' training profiles (t-SNE after a 50-component PCA), cosine metric for t-SNE and UMAP.
Embedding = Literal["tsne", "tsne_sklearn", "pca", "kpca", "umap"]
Discretization = Literal["bin", "qtb", "lsa"]


class DeepInsight(Section):
    """Genes placed in 2-D by an embedding of their training profiles, then discretised onto the grid."""

    #: tsne (openTSNE) | tsne_sklearn (pyDeepInsight's) | pca | kpca | umap of the genes' profiles
    embedding: Embedding = "tsne"
    #: bin: nearest pixel (genes may share one); qtb: quantile bins per axis; lsa: linear sum assignment, one gene
    #: per pixel when n_genes <= height*width
    discretization: Discretization = "lsa"
    #: t-SNE's perplexity
    perplexity: float = Field(30.0, gt=1)
    #: training samples (at most) the layout is fitted on
    max_fit_samples: int = Field(5000, ge=10)


class Multichannel(Section):
    """Three embeddings of the genes, one per channel."""

    #: the three embeddings, one per channel (as deepinsight.embedding)
    embeddings: list[Embedding] = Field(default_factory=lambda: ["tsne", "pca", "kpca"], min_length=3, max_length=3)
    discretization: Discretization = "lsa"
    #: t-SNE's perplexity
    perplexity: float = Field(30.0, gt=1)
    #: training samples (at most) the layouts are fitted on
    max_fit_samples: int = Field(5000, ge=10)


class GeneGrid(Section):
    """The TCGA method: the top n*n genes by variance, in a seeded order, reshaped to n x n."""

    #: permutation: seeded by the experiment seed; embedding: the 1-D order of ``embedding`` of the genes' profiles
    order: Literal["permutation", "embedding"] = "permutation"
    #: pca | spectral, for order: embedding
    embedding: Literal["pca", "spectral"] = "pca"
    #: training samples (at most) the variance and the order are computed on
    max_fit_samples: int = Field(5000, ge=10)


class Fotomics(Section):
    """FFT-based gene coordinates, then the DeepInsight layout."""

    discretization: Discretization = "lsa"
    #: zero each training sample's spectral outliers (beyond the 10th/90th percentiles -/+ 1.5 x their spread)
    outliers: bool = True


class SampleSpot(Section):
    """The brain-tumour paper's transductive sample image, as published (128 x 128 RGB, one 7 x 7 spot)."""

    #: principal components of the samples (sc.pp.pca)
    n_pcs: int = Field(50, ge=2)
    #: neighbours of the samples' graph (sc.pp.neighbors), for the UMAP
    n_neighbors: int = Field(15, ge=2)
    #: side of each sample's square, in pixels
    spot: int = Field(7, ge=1)
    #: image side in pixels (RGB)
    size: int = Field(128, ge=8)


class Augmentation(Section):
    """Extra training samples for classes under ``min_samples``, made after the split from training samples only.

    gtex_noise: a real training sample times |N(1, noise_sd)| per gene (the GTEx prior art);
    interpolate: a random point between two training samples of the same class.
    """

    #: none | gtex_noise (sample x |N(1, noise_sd)|) | interpolate (same-class mixing)
    method: Literal["none", "gtex_noise", "interpolate"] = "none"
    #: add training samples to classes below this count (after the split)
    min_samples: int = Field(0, ge=0)
    #: gtex_noise: sd of the multiplicative noise
    noise_sd: float = Field(0.5, gt=0)


class SmallClasses(Section):
    """Classes with fewer than ``min_samples`` samples (all splits, before augmentation), too small for the
    held-out split (2 at least) or for the trainer's folds (about folds / (1 - test_size)).

    error: stop, naming them and their counts; leave_out: drop their samples before the held-out split, named with
    their counts in the log, the manifest, dataset.json and the report. (No keep: augmented copies never validate.)
    """

    #: error: stop, naming them and their counts | leave_out: drop them before the split, named with their counts in
    #: the log, the manifest, dataset.json and the report
    policy: Literal["error", "leave_out"] = "error"
    #: too small: fewer samples than this (>= 2); a class needs train_torch.folds training samples after the held-out
    #: split, about folds / (1 - test_size): 7 for 5 folds and test_size 0.2
    min_samples: int = Field(2, ge=2)


class LayoutSensitivity(Section):
    """Other layouts of the same genes for the layout-sensitivity check: the layout re-fitted on the same training
    split with other seeds (and, for deepinsight, one other embedding), every sample rendered through each beside
    the main images. train_torch trains one cheap member of each image model on each, explain compares their class
    gene rankings with the main model's. Only for transforms whose layout is fitted once and depends on the seed
    (deepinsight, multichannel, gene-grid); fotomics' Fourier layout has no seed, sample-spot and vector no layout."""

    #: layouts re-fitted with the seeds seed+1 .. seed+layouts (0: none; each adds a layout fit, a set of images and
    #: one model trained per image model)
    layouts: int = Field(0, ge=0)
    #: one more layout with this embedding in place of preprocess.deepinsight.embedding (deepinsight only; same
    #: seed); null: none
    embedding: Embedding | None = None

    @property
    def enabled(self) -> bool:
        return self.layouts > 0 or self.embedding is not None


#: transforms whose layout the layout-sensitivity check can re-fit: fitted on the training split, seeded
RELAYOUT_TRANSFORMS = ("deepinsight", "multichannel", "gene-grid")


class Preprocess(Section):
    #: genes kept, chosen on the training split
    n_genes: int = Field(1024, ge=2)
    #: variance: the top n_genes by training variance; hvg: scanpy's highly variable genes on training samples
    gene_selection: Literal["variance", "hvg"] = "variance"
    #: library-size normalisation target before log1p
    target_sum: float = Field(1e4, gt=0)
    #: held-out test split (stratified, group-aware)
    test_size: float = Field(0.2, gt=0, lt=1)
    transform: Literal["deepinsight", "multichannel", "gene-grid", "fotomics", "sample-spot", "vector"] = "deepinsight"
    #: image height in pixels (any size, square or not)
    height: int = Field(32, ge=2)
    #: image width in pixels
    width: int = Field(32, ge=2)
    deepinsight: DeepInsight = Field(default_factory=DeepInsight)
    multichannel: Multichannel = Field(default_factory=Multichannel)
    gene_grid: GeneGrid = Field(default_factory=GeneGrid)
    fotomics: Fotomics = Field(default_factory=Fotomics)
    sample_spot: SampleSpot = Field(default_factory=SampleSpot)
    augmentation: Augmentation = Field(default_factory=Augmentation)
    small_classes: SmallClasses = Field(default_factory=SmallClasses)
    layout_sensitivity: LayoutSensitivity = Field(default_factory=LayoutSensitivity)
    #: rows per chunk: memory stays bounded whatever the number of cells
    chunk_size: int = Field(8192, ge=1)
    #: write vectors.npy (n_samples x n_genes float32); needed by the vector transform and used by explain
    save_vectors: bool = True

    @model_validator(mode="after")
    def _layout_sensitivity(self) -> Preprocess:
        """The check re-fits the layout with other seeds (or another embedding): a transform without a fitted,
        seeded layout would give the same images again, or none. An error, not a skip: the check was asked for."""
        ls = self.layout_sensitivity
        if not ls.enabled:
            return self
        if self.transform not in RELAYOUT_TRANSFORMS:
            why = {
                "fotomics": "its Fourier layout does not depend on the seed (every re-fit is the same layout)",
                "sample-spot": "its images are transductive, with no pixel->gene map",
                "vector": "it makes no images",
            }[self.transform]
            raise ValueError(
                f"preprocess.layout_sensitivity needs a seeded gene layout ({', '.join(RELAYOUT_TRANSFORMS)}); "
                f"transform '{self.transform}': {why}; set layouts: 0 and embedding: null"
            )
        if ls.embedding is not None and self.transform != "deepinsight":
            raise ValueError(
                f"preprocess.layout_sensitivity.embedding replaces preprocess.deepinsight.embedding: deepinsight "
                f"only (transform is '{self.transform}'); set it to null"
            )
        if ls.embedding is not None and ls.embedding == self.deepinsight.embedding:
            raise ValueError(
                f"preprocess.layout_sensitivity.embedding: '{ls.embedding}' is preprocess.deepinsight.embedding "
                "already; name another embedding or null"
            )
        return self


STAGE = StageSpec(
    name="preprocess",
    provides=("dataset",),
    sections={"expression": Expression, "preprocess": Preprocess},
    outputs=(
        Output(
            "images.npy",
            "(n_samples, channels, height, width) uint8 images, memory-mappable",
            when="a transform that makes images (not vector)",
        ),
        Output(
            "vectors.npy",
            "(n_samples, n_genes) float32 scaled gene values the images were rendered from",
            when="save_vectors: true",
        ),
        Output("samples.csv", "sample, label, label_index, split (train/test), group, augmented_from"),
        Output("genes.csv", "the selected genes in column order, with the training statistics used to scale them"),
        Output(
            "pixel_genes.npz",
            "the pixel->gene map (shared.genemap.PixelGeneMap)",
            when="a transform with a gene map (not sample-spot or vector)",
        ),
        Output("gene_coords.csv", "each gene's embedded 2-D position and its pixel", when="an embedding transform"),
        Output(
            "covariates.csv",
            "sample, then each expression.covariates column (text, empty where missing) and the QC covariates "
            "total_counts and n_genes_by_counts as the scale allows; samples.csv's rows, empty for augmented rows",
        ),
        Output(
            "layouts/*/images.npy",
            "the samples rendered through another layout (layout_sensitivity), as images.npy",
            when="preprocess.layout_sensitivity set",
        ),
        Output(
            "layouts/*/pixel_genes.npz",
            "that layout's pixel->gene map",
            when="preprocess.layout_sensitivity set",
        ),
        Output(
            "layouts/*/gene_coords.csv",
            "that layout's gene positions",
            when="preprocess.layout_sensitivity set, an embedding transform",
        ),
        Output(
            "dataset.json",
            "classes, image shape, transform, counts per split and class, the covariates named, the other layouts "
            "(layout_sensitivity)",
        ),
    ),
    description="expression data -> normalised matrix -> images with the pixel->gene map",
)
