"""Config section read by train_sklearn."""

from __future__ import annotations

from pydantic import Field

from shared.config import Output, Section, StageSpec
from shared.evaluation.outputs import CLASSIFIER_OUTPUTS


class TrainSklearn(Section):
    folds: int = Field(3, ge=2)
    neighbours: int = Field(15, ge=1)
    #: a folder with samples.csv and vectors.npy, read when no dataset provider is enabled (as a trainer that reads
    #: its own inputs, the 3-D MRI stage say, needs no preprocess)
    data: str | None = None


STAGE = StageSpec(
    name="train_sklearn",
    provides=("classifiers",),
    uses=("dataset",),
    sections={"train_sklearn": TrainSklearn},
    outputs=(Output("models.json", "the classifier index"), *CLASSIFIER_OUTPUTS),
    description="k-nearest neighbours on the expression vectors (a test of the classifier role)",
)
