"""Config section read by train_torch."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import Section, StageSpec


class TrainTorch(Section):
    arch: Literal["resnet18"] = "resnet18"
    pretrained: Literal["auto", "never"] = "auto"
    #: auto: the small (3x3, stride 1, no max-pool) stem for images under 64 pixels a side, else ImageNet's
    stem: Literal["auto", "imagenet", "small"] = "auto"
    folds: int = Field(5, ge=2)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    #: balanced: cross-entropy weighted by inverse class frequency of the fold's training rows
    class_weights: Literal["balanced", "none"] = "balanced"
    #: training-time augmentation: each pixel (gene) is zeroed with this probability, as dropout events are in
    #: sequencing; it keeps a large CNN from memorising a few hundred samples
    input_dropout: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    num_workers: int = Field(0, ge=0)


STAGE = StageSpec(
    name="train_torch",
    needs=("preprocess",),
    sections={"train_torch": TrainTorch},
    description="ResNet-18 on the preprocess images: k-fold with early stopping, held-out test",
)
