"""Config section read by explain."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import InputFile, Output, Section, StageSpec


class Explain(Section):
    methods: list[Literal["saliency", "gradient", "input_x_gradient"]] = Field(default_factory=lambda: ["saliency"], min_length=1)
    batch_size: int = Field(64, ge=1)
    top_k: int = Field(20, ge=1)
    #: known marker genes, a CSV with columns class, gene (the synthetic fixtures write their planted ones)
    markers: InputFile | None = None
    precision_k: int = Field(10, ge=1)


STAGE = StageSpec(
    name="explain",
    provides=("explanations",),
    requires=("classifiers",),
    sections={"explain": Explain},
    outputs=(
        Output("metrics.json", "per model and method: its description, whether it is signed, marker precision; "
                               "the models left unexplained and why"),
        Output("{model}/{method}/attributions.npy", "(n_test, *input_shape) float32 per-sample attributions of the "
                                                    "true class"),
        Output("{model}/{method}/class_maps.npy", "(n_classes, *input_shape) class-mean attributions"),
        Output("{model}/{method}/figures/class_maps.png", "class means with the top genes marked"),
        Output("{model}/{method}/sample_genes.npy", "(n_test, n_genes) float32 per-sample gene attributions",
               when="images with a pixel->gene map"),
        Output("{model}/{method}/gene_attributions.csv", "genes x classes class-mean gene attributions",
               when="genes known (vectors, or images with a gene map)"),
        Output("{model}/{method}/top_genes.csv", "class, rank, gene, score: the top_k genes per class",
               when="genes known"),
        Output("{model}/{method}/marker_precision.csv", "precision and recall of the known markers among each "
                                                        "class's top precision_k genes", when="explain.markers set"),
    ),
    description="attributions per test sample, class maps, gene rankings, marker precision",
)
