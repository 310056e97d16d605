"""python -m stages.train_sklearn --config FILE (with ONCOXAI_STAGE_PATH=tests/extra_stages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsClassifier

from shared.artifacts import StageRun
from shared.evaluation.baselines import train_sklearn
from shared.evaluation.results import write_models_index, write_result
from shared.evaluation.splits import Protocol
from shared.stage import main


def run(stage: StageRun) -> None:
    settings = stage.exp.section("train_sklearn")
    data = stage.provider("dataset") if stage.exp.providers("dataset") else Path(settings.data)
    samples = pd.read_csv(data / "samples.csv", dtype={"sample": str, "label": str, "group": str})
    classes = samples.drop_duplicates("label_index").sort_values("label_index")["label"].tolist()
    proto = Protocol(samples, classes, settings.folds, 1, stage.exp.seed, key="train_sklearn.folds")
    vectors = np.load(data / "vectors.npy", mmap_mode="r")
    result = train_sklearn(
        proto, "knn", lambda seed: KNeighborsClassifier(settings.neighbours), vectors, stage.exp.seed, kind="knn"
    )
    write_result(stage.out, proto, result)
    write_models_index(stage.out, [result])


if __name__ == "__main__":
    raise SystemExit(main("train_sklearn", run))
