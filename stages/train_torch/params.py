"""Config section read by train_torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import Output, Section, StageSpec
from shared.evaluation.outputs import CLASSIFIER_OUTPUTS


class TrainTorch(Section):
    #: deep models, each trained with the same protocol: resnet18 / efficientnet_b0 (torchvision) and small_cnn on
    #: images, dense on the expression vectors
    models: list[Literal["resnet18", "efficientnet_b0", "small_cnn", "dense"]] = Field(
        default_factory=lambda: ["resnet18"], min_length=1
    )
    #: simple models fitted on the same splits and genes (the scaled expression vectors)
    baselines: list[Literal["logistic_regression", "random_forest"]] = Field(
        default_factory=lambda: ["logistic_regression", "random_forest"]
    )
    #: ImageNet weights when in the local torch cache, else random initialisation
    pretrained: Literal["auto", "never"] = "auto"
    #: auto: the small stem (ResNet: 3x3 stride 2, no max-pool; EfficientNet: 3x3 stride 1) for images under 64
    #: pixels a side, else ImageNet's
    stem: Literal["auto", "imagenet", "small"] = "auto"
    #: EfficientNet-B0's normalisation. auto: GroupNorm when it is trained from scratch (BatchNorm's running
    #: statistics lag a small run and leave it at chance in evaluation mode), BatchNorm with ImageNet weights
    norm: Literal["auto", "batch", "group"] = "auto"
    #: small | gtex (19291 -> 7000 -> 2916 -> 540 -> classes) | custom (dense_widths)
    dense_preset: Literal["small", "gtex", "custom"] = "small"
    #: hidden widths of dense_preset: custom
    dense_widths: list[int] = Field(default_factory=list)
    #: dense network and small_cnn
    dropout: float = Field(0.5, ge=0, lt=1)

    #: stratified (group-aware) k-fold on the training split
    folds: int = Field(5, ge=2)
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
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    #: learning rate (with schedule: onecycle, its peak)
    lr: float = Field(1e-3, gt=0)
    #: the optimizer's weight decay (L2 for adam, decoupled for adamw)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["none", "onecycle"] = "none"
    #: early stopping on validation loss; best checkpoint restored
    patience: int = Field(5, ge=1)
    #: smallest fall in validation loss that counts as an improvement for early stopping
    min_delta: float = Field(0.0, ge=0)
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    #: the focal loss's focusing parameter (loss: focal)
    focal_gamma: float = Field(2.0, ge=0)
    #: balanced: the loss weighted by inverse class frequency of the fold's training rows
    class_weights: Literal["balanced", "none"] = "balanced"
    #: weighted: a WeightedRandomSampler drawing classes equally often (instead of shuffling)
    sampler: Literal["shuffle", "weighted"] = "shuffle"
    #: training-time augmentation: each input value (gene) is zeroed with this probability, as dropout events are
    #: in sequencing; it keeps a large CNN from memorising a few hundred samples
    input_dropout: float = Field(0.0, ge=0, lt=1)
    #: cross-entropy label smoothing
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    #: on a GPU: bfloat16 autocast and channels-last memory format (ignored on CPU)
    mixed_precision: bool = True
    #: channels-last memory format on a GPU
    channels_last: bool = True
    #: DataLoader worker processes
    num_workers: int = Field(0, ge=0)


STAGE = StageSpec(
    name="train_torch",
    provides=("classifiers",),
    requires=("dataset",),
    sections={"train_torch": TrainTorch},
    outputs=(
        Output("models.json", "the classifier index: name, kind, framework, folder, input of every model"),
        *CLASSIFIER_OUTPUTS,
        Output(
            "{model}/model.json",
            "architecture, classes, input spec (array, scaling, gene map) and member files",
            when="deep models",
        ),
        Output(
            "{model}/member*.pt", "one state_dict per fold model (torch.load(weights_only=True))", when="deep models"
        ),
        Output("{model}/tensorboard/**", "TensorBoard event files per fold", when="deep models"),
        Output(
            "pixel_genes.npz",
            "the pixel->gene map the models were trained through, copied from the dataset",
            when="images with a gene map",
        ),
        Output("dataset.json", "the dataset description the models were trained on, copied from the dataset"),
        Output(
            "layouts.json",
            "the layout-sensitivity check's models: name (<model>@<layout>), the model it varies, the layout (seed, "
            "embedding, genes moved), folder, input, held-out test metrics",
            when="preprocess.layout_sensitivity set",
        ),
        Output(
            "layouts/*/{model}/model.json",
            "one member of each image model trained on another layout exactly as the model's first fold model",
            when="preprocess.layout_sensitivity set",
        ),
        Output("layouts/*/{model}/member0.pt", "its state_dict", when="preprocess.layout_sensitivity set"),
        Output(
            "layouts/*/pixel_genes.npz",
            "the other layout's pixel->gene map, copied from the dataset",
            when="preprocess.layout_sensitivity set",
        ),
    ),
    description="CNNs / dense network with k-fold early stopping, baselines on the same splits, held-out test",
)
