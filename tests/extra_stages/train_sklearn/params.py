"""Config section read by train_sklearn."""
from __future__ import annotations

from pydantic import Field

from shared.config import Output, Section, StageSpec
from shared.evaluation.outputs import CLASSIFIER_OUTPUTS


class TrainSklearn(Section):
    folds: int = Field(3, ge=2)
    neighbours: int = Field(15, ge=1)


STAGE = StageSpec(
    name="train_sklearn",
    provides=("classifiers",),
    requires=("dataset",),
    sections={"train_sklearn": TrainSklearn},
    outputs=(Output("models.json", "the classifier index"), *CLASSIFIER_OUTPUTS),
    description="k-nearest neighbours on the expression vectors (a test of the classifier role)",
)
