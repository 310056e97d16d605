"""Config sections read by preprocess: ``expression`` (the input) and ``preprocess`` (what to do with it)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import InputFile, Section, StageSpec


class Expression(Section):
    """A transcriptomic input."""

    path: InputFile
    format: Literal["h5ad"] = "h5ad"
    label_key: str
    group_key: str | None = None
    layer: str | None = None
    use_raw: bool = False
    gene_filter: InputFile | None = None
    normalized: bool = False


class DeepInsight(Section):
    """Genes placed in 2-D by an embedding of their training profiles, then discretised onto the grid."""

    embedding: Literal["tsne", "pca", "kpca", "umap"] = "tsne"
    discretization: Literal["bin", "lsa"] = "lsa"
    perplexity: float = Field(30.0, gt=1)
    max_fit_samples: int = Field(5000, ge=10)


class Preprocess(Section):
    n_genes: int = Field(1024, ge=2)
    target_sum: float = Field(1e4, gt=0)
    test_size: float = Field(0.2, gt=0, lt=1)
    transform: Literal["deepinsight"] = "deepinsight"
    height: int = Field(32, ge=2)
    width: int = Field(32, ge=2)
    deepinsight: DeepInsight = Field(default_factory=DeepInsight)
    chunk_size: int = Field(8192, ge=1)


STAGE = StageSpec(
    name="preprocess",
    sections={"expression": Expression, "preprocess": Preprocess},
    description="expression data -> normalised matrix -> images with the pixel->gene map",
)
