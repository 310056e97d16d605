"""Config section read by train_tf_gradcam."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import InputFile, Output, Section, StageSpec
from shared.evaluation.outputs import CLASSIFIER_OUTPUTS

TfMethod = Literal["grad_cam", "grad_cam_plus_plus", "guided_backprop", "guided_grad_cam"]


class TfExplain(Section):
    """The explanations computed in the stage, of every held-out test sample's true class."""

    #: the Grad-CAM family computed in the stage
    methods: list[TfMethod] = Field(
        default_factory=lambda: ["grad_cam", "grad_cam_plus_plus", "guided_backprop", "guided_grad_cam"]
    )
    #: the convolution the CAMs are taken at: auto (the last convolution) or a layer name (e.g. conv2)
    layer: str = "auto"
    #: the reference's gene picker: a sample's pixels whose map is at least this fraction of its maximum
    threshold: float = Field(0.7, gt=0, le=1)
    #: genes listed per sample (most important first) in sample_top_genes.csv
    per_sample_top_k: int = Field(50, ge=1)
    #: genes listed per class in top_genes.csv
    top_k: int = Field(20, ge=1)
    #: known marker genes, a CSV with columns class, gene
    markers: InputFile | None = None
    #: k of the planted-marker precision@k when markers are given
    precision_k: int = Field(10, ge=1)
    #: samples per gradient pass
    batch_size: int = Field(64, ge=1)


class TrainTfGradcam(Section):
    #: reference_cnn: three 3x3 convolutions (32, 64, 64) each with 2x2 max-pooling, dense 1024 -> 512 -> 64 with
    #: dropout (the prior art's); small_resnet: a stem and three residual stages (16, 32, 64), global pooling
    models: list[Literal["reference_cnn", "small_resnet"]] = Field(
        default_factory=lambda: ["reference_cnn"], min_length=1
    )
    #: the same protocol as train_torch: same folds and held-out test for the same seed
    folds: int = Field(3, ge=2)
    #: repeated k-fold: more paired scores for the model comparison
    repeats: int = Field(1, ge=1)
    #: split-conformal prediction sets of the held-out test (test_conformal.csv, metrics.json's conformal): the
    #: share of samples whose set should hold the true class, calibrated on the out-of-fold predictions
    conformal_coverage: float = Field(0.9, gt=0, lt=1)
    #: calibrate one threshold per class (Mondrian), so each class is covered at conformal_coverage; needs about
    #: 1/(1 - conformal_coverage) training samples a class or more. false: one threshold, coverage over all samples
    conformal_by_class: bool = False
    #: most epochs per fold (early stopping may end a fold sooner)
    epochs: int = Field(30, ge=1)
    #: samples per training step
    batch_size: int = Field(32, ge=1)
    #: Adam's learning rate
    lr: float = Field(1e-3, gt=0)
    #: epochs without a lower validation loss before a fold stops; the best epoch's weights are restored
    patience: int = Field(5, ge=1)
    #: epochs always run before early stopping may stop a fold (the reference CNN sits on a plateau for the first
    #: few epochs of a small data set before it starts to learn)
    min_epochs: int = Field(10, ge=0)
    #: dropout rate after each dense layer (reference_cnn) or before the output (small_resnet)
    dropout: float = Field(0.5, ge=0, lt=1)
    class_weights: Literal["balanced", "none"] = "balanced"
    explain: TfExplain = Field(default_factory=TfExplain)


STAGE = StageSpec(
    name="train_tf_gradcam",
    provides=("classifiers", "explanations"),
    requires=("dataset",),
    sections={"train_tf_gradcam": TrainTfGradcam},
    outputs=(
        Output("models.json", "the classifier index (framework: tensorflow)"),
        *CLASSIFIER_OUTPUTS,
        Output("{model}/model.json", "architecture, classes and the input the model reads"),
        Output("{model}/member*.keras", "the fold models (Keras 3 format)"),
        Output("{model}/tensorboard/**", "TensorBoard logs per fold"),
        Output("pixel_genes.npz", "the pixel->gene map of the images (copied from preprocess)"),
        Output("dataset.json", "classes, image shape, transform (copied from preprocess)"),
        Output(
            "metrics.json",
            "explanations in explain's layout: per model and method its description, layer, marker precision",
        ),
        Output("{model}/{method}/attributions.npy", "(n_test, 1, H, W) float32 maps of the true class"),
        Output("{model}/{method}/class_maps.npy", "(n_classes, 1, H, W) class-mean maps"),
        Output("{model}/{method}/sample_genes.npy", "(n_test, n_genes) float32 per-sample gene attributions"),
        Output("{model}/{method}/gene_attributions.csv", "genes x classes class-mean gene attributions"),
        Output("{model}/{method}/top_genes.csv", "class, rank, gene, score: the top_k genes per class"),
        Output(
            "{model}/{method}/sample_top_genes.csv",
            "sample, class, prediction, gene, score, rank: the genes on "
            "pixels at or above threshold x the sample's maximum",
        ),
        Output(
            "{model}/{method}/marker_precision.csv",
            "precision of the known markers among each class's top precision_k genes",
            when="explain.markers set",
        ),
        Output("{model}/{method}/figures/class_maps.png", "class means with the top genes circled"),
        Output("{model}/{method}/figures/top_genes_heatmap.png", "each class's top genes across all classes"),
    ),
    description="Keras CNNs on gene-grid images (the TCGA prior art) with Grad-CAM, Grad-CAM++ and Guided Grad-CAM",
)
