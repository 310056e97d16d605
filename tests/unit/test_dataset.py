"""The dataset hand-off (shared/dataset.py): what preprocess writes is what every reader gets, with one set of
dtypes: ids and labels stay text, augmented copies are told apart the same way everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared import dataset
from shared.evaluation.splits import Protocol

pytestmark = pytest.mark.unit


def _samples() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample": ["001", "002", "003", "004", "005", "006", "007", "008", "009", "001~aug0"],
            "label": ["NA", "NA", "NA", "NA", "B", "B", "B", "B", "NA", "NA"],
            "label_index": [1, 1, 1, 1, 0, 0, 0, 0, 1, 1],
            "split": ["train"] * 8 + ["test", "train"],
            "group": ["d1", "d1", "d2", "d3", "d1", "d2", "d3", "d4", "d5", "d1"],
            "augmented_from": [""] * 9 + ["001"],
        }
    )


def test_samples_round_trip_keeps_ids_and_labels_as_text(tmp_path):
    """'001' stays '001' (not 1) and a class called 'NA' stays a label (pandas reads it as missing by default)."""
    dataset.write_samples(tmp_path / dataset.SAMPLES, _samples())
    back = dataset.read_samples(tmp_path / dataset.SAMPLES)
    pd.testing.assert_frame_equal(back, _samples())
    assert back["sample"][0] == "001" and back["label"][0] == "NA"


def test_measured_rows_leave_augmented_copies_out_everywhere(tmp_path):
    samples = _samples()
    assert list(dataset.measured_training_rows(samples)) == list(range(8))
    assert list(dataset.test_rows(samples)) == [8]
    # a table without augmented_from (the MRI stage's) has no copies
    assert list(dataset.measured_training_rows(samples.drop(columns="augmented_from"))) == [*range(8), 9]
    # the protocol splits the same rows
    proto = Protocol(samples, ["B", "NA"], folds=2, repeats=1, seed=0)
    assert list(proto.train_rows) == list(range(8)) and list(proto.test_rows) == [8]


def test_a_dataset_folder_opens_with_its_arrays_and_gives_the_model_input_spec(tmp_path):
    folder = tmp_path / "exp" / "preprocess"
    folder.mkdir(parents=True)
    dataset.write_samples(folder / dataset.SAMPLES, _samples())
    dataset.write_info(folder, {"classes": ["B", "NA"], "gene_map": dataset.GENE_MAP, "vectors": dataset.VECTORS})
    np.save(folder / dataset.IMAGES, np.zeros((10, 1, 4, 4), np.uint8))
    np.save(folder / dataset.VECTORS, np.zeros((10, 16), np.float32))
    ds = dataset.Dataset.open(folder)
    assert ds.classes == ["B", "NA"] and list(ds.labels[:5]) == [1, 1, 1, 1, 0] and ds.groups[0] == "d1"
    assert ds.images().shape == (10, 1, 4, 4) and ds.genes() is None and ds.gene_map_path() is None
    image = ds.model_input("image", trainer="train_torch")
    assert image == {
        "kind": "image",
        "spatial_dims": 2,
        "array": "preprocess/images.npy",
        "dtype": "uint8",
        "scale": 1 / 255,
        "samples": "preprocess/samples.csv",
        "features": "preprocess/genes.csv",
        "gene_map": "train_torch/pixel_genes.npz",
        "gene_values": "preprocess/vectors.npy",
    }
    vector = ds.model_input("vector")
    assert vector["spatial_dims"] == 0 and vector["scale"] == 1.0 and "gene_map" not in vector
