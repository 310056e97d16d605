"""Config section read by explain."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import InputFile, Section, StageSpec


class Explain(Section):
    methods: list[Literal["saliency", "gradient", "input_x_gradient"]] = Field(default_factory=lambda: ["saliency"], min_length=1)
    batch_size: int = Field(64, ge=1)
    top_k: int = Field(20, ge=1)
    #: known marker genes, a CSV with columns class, gene (the synthetic fixtures write their planted ones)
    markers: InputFile | None = None
    precision_k: int = Field(10, ge=1)


STAGE = StageSpec(
    name="explain",
    needs=("preprocess", "train_torch"),
    sections={"explain": Explain},
    description="attributions per test sample, class maps, gene rankings, marker precision",
)
