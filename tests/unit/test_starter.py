"""oncoxai init (oncoxai/starter.py): what it reads of a data file and the config it writes from it."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml

from oncoxai import cli
from oncoxai.starter import candidates, describe
from shared import config


def _h5ad(path, scaled: bool = False):
    rng = np.random.default_rng(0)
    counts = rng.poisson(3, size=(60, 30)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "n_counts": counts.sum(1) + 0.5,  # a measurement: never a label
            "patient_id": [f"p{i % 6}" for i in range(60)],
            "batch": [f"b{i % 2}" for i in range(60)],
            "cell_type": np.repeat(["T", "B", "NK"], 20),
        },
        index=[f"c{i}" for i in range(60)],
    )
    adata = anndata.AnnData(np.log1p(counts) if scaled else counts, obs=obs)
    if scaled:
        adata.raw = adata.copy()
        adata.X = (adata.X - adata.X.mean(0)) / (adata.X.std(0) + 1e-6)
    adata.write_h5ad(path)
    return path


def test_the_label_the_group_and_the_scale_read_from_an_h5ad(tmp_path, capsys):
    data = _h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "exp.yaml"
    assert cli.main(["init", str(data), "--out", str(out)]) == 0
    raw = yaml.safe_load(out.read_text())
    assert raw["expression"] == {
        "path": str(data),
        "format": "h5ad",
        "label_key": "cell_type",
        "group_key": "patient_id",
        "scale": "counts",
    }
    assert raw["preprocess"]["n_genes"] == 30 and raw["preprocess"]["height"] == raw["preprocess"]["width"] == 8
    assert raw["train_torch"]["folds"] == 5  # the smallest class: 20 samples
    assert "other candidates: batch" in out.read_text()  # the next grouping is named, not chosen
    config.validate(raw, source=str(out))
    assert "wrote" in capsys.readouterr().out


def test_scaled_values_send_it_to_raw(tmp_path):
    found = describe(_h5ad(tmp_path / "scaled.h5ad", scaled=True))
    assert found["use_raw"] and found["scale"] == "log1p" and "X holds scaled values" in found["why"]


def test_a_genes_x_samples_table_with_its_labels(tmp_path):
    rng = np.random.default_rng(1)
    samples = [f"S{i:03d}" for i in range(40)]
    matrix = pd.DataFrame(rng.poisson(5, size=(25, 40)), index=[f"G{i}" for i in range(25)], columns=samples)
    matrix.index.name = "gene"
    matrix.to_csv(tmp_path / "expr.csv")
    pd.DataFrame({"sample": samples, "subtype": ["A", "B"] * 20, "age": rng.integers(20, 80, 40)}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    found = describe(tmp_path / "expr.csv", str(tmp_path / "labels.csv"))
    assert found["format"] == "csv" and found["orientation"] == "genes_x_samples" and found["n_genes"] == 25
    assert found["label_candidates"][0][:2] == ("subtype", 2) and found["scale"] == "counts"


@pytest.mark.parametrize(
    "name, args, says",
    [
        ("x.gct", [], "oncoxai init reads .h5ad, .csv and .tsv files; for GTEx .gct"),
        ("x.csv", [], "a CSV matrix needs its labels table: oncoxai init"),
        ("missing.h5ad", [], "missing.h5ad: no such file"),
    ],
)
def test_what_it_cannot_read_stops_with_one_line(tmp_path, capsys, name, args, says):
    if name != "missing.h5ad":
        (tmp_path / name).write_text("a,b\n1,2\n")
    assert cli.main(["init", str(tmp_path / name), "--out", str(tmp_path / "o.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "o.yaml").exists()


def test_only_columns_with_few_repeated_classes_are_labels():
    table = pd.DataFrame({"id": [f"s{i}" for i in range(20)], "grade": ["1", "2"] * 10, "value": np.linspace(0, 1, 20)})
    labels, groups = candidates(table)
    assert [c for c, _, _ in labels] == ["grade"] and groups == []
