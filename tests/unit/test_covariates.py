"""expression.covariates and the QC covariates: every format carries the named sample-metadata columns where it finds
its labels (text, '' where missing), a missing column is a one-line error naming it, the QC covariates equal a
direct computation, and the dataset's reader gives covariates.csv in samples.csv's order (None for older datasets).

The public layouts are those the loaders' own tests write (tests/e2e/test_public_formats.py,
tests/unit/test_loaders.py).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from shared import config, dataset
from shared.errors import UserError
from stages.preprocess.covariates import covariates_table, named_covariates, qc_columns, qc_metrics
from stages.preprocess.formats import read_expression
from stages.preprocess.params import Expression
from stages.preprocess.source import open_expression

from ..e2e.test_public_formats import GSM, SAMPLE_IDS, _all_tissue_gct, _gdc, _gtex_tables, _series_matrix
from ..e2e.test_public_formats import SAMPLES as GTEX_SAMPLES
from ..support import write_config
from .test_loaders import CLASSES, COUNTS, GENES, SAMPLES, TCGA_ALIQUOTS, _csv_config, _matrix_text, _tcga, _write


def _covariates(**kw) -> pd.DataFrame:
    """The covariates of the read matrix, as preprocess takes them from obs."""
    expression = Expression(**kw)
    return named_covariates(read_expression(expression).obs, expression.covariates)


def _error(named, **kw) -> str:
    with pytest.raises(UserError) as err:
        read_expression(Expression(**kw))
    message = str(err.value)
    assert str(named) in message and "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------------ per format


def test_h5ad_obs_covariates_keep_missing_values_empty_and_survive_the_label_columns(tmp_path):
    """A categorical with a missing category, a float with NaN, and an obs column called 'group' (which
    check_obs overwrites with the group_key's values): each covariate is its own column's text."""
    obs = pd.DataFrame(
        {
            "state": CLASSES,
            "patient": ["p1", "p1", "p2", "p3"],
            "batch": pd.Categorical(["b1", None, "b2", "b1"]),
            "age": [7.5, np.nan, 61.0, 40.25],
            "group": ["x", "y", "x", "y"],
        },
        index=SAMPLES,
    )
    path = tmp_path / "x.h5ad"
    ad.AnnData(X=sp.csr_matrix(COUNTS), obs=obs, var=pd.DataFrame(index=GENES)).write_h5ad(path)
    expression = Expression(
        path=str(path), label_key="state", group_key="patient", covariates=["batch", "age", "group", "batch"]
    )
    assert expression.covariates == ["batch", "age", "group"]  # repeats dropped
    adata, backed = open_expression(expression)  # a plain .h5ad: backed, checked by check_obs
    assert backed and list(adata.obs["group"]) == ["p1", "p1", "p2", "p3"]
    table = named_covariates(adata.obs, expression.covariates)
    assert table.to_dict("list") == {
        "batch": ["b1", "", "b2", "b1"],
        "age": ["7.5", "", "61.0", "40.25"],
        "group": ["x", "y", "x", "y"],
    }
    message = _error(path, path=str(path), label_key="state", covariates=["sex"])
    assert "expression.covariates 'sex' is not an obs column" in message and "'batch'" in message


def test_csv_labels_table_covariates_with_an_empty_cell(tmp_path):
    labels = _write(
        tmp_path / "labels.csv",
        "sample,tumour_state,patient,batch,centre\nS1,AC,p1,b1,BI\nS2,MES,p1,,BI\nS3,AC,p2,b2,NA\nS4,NPC,p3,b1,WU\n",
    )
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    table = _covariates(**_csv_config(matrix, labels, covariates=["batch", "centre", "patient"]))
    assert list(table.index) == SAMPLES
    assert table.to_dict("list") == {
        "batch": ["b1", "", "b2", "b1"],
        "centre": ["BI", "BI", "", "WU"],  # NA (R's missing value) is missing, as for labels
        "patient": ["p1", "p1", "p2", "p3"],
    }
    message = _error(labels, **_csv_config(matrix, labels, covariates=["batch", "sex"]))
    assert "expression.covariates 'sex' is not a column of the labels table" in message and "'centre'" in message


def test_gtex_covariates_from_the_attribute_table_and_the_subject_phenotypes(tmp_path):
    """SMCENTER (sequencing centre) and SMRIN from the sample attributes; SEX (1/2 -> male/female, as for labels),
    AGE and DTHHRDY from the subject phenotypes through each sample's donor."""
    attributes, phenotypes = _gtex_tables(tmp_path)
    gct = _all_tissue_gct(tmp_path, np.arange(12).reshape(4, 3))
    base = dict(path=str(gct), format="gct", labels=str(attributes), phenotypes=str(phenotypes), label_key="SMTSD")
    table = _covariates(**base, group_key="donor", covariates=["SMCENTER", "SMRIN", "SEX", "AGE", "DTHHRDY"])
    assert list(table.index) == GTEX_SAMPLES
    assert table.to_dict("list") == {
        "SMCENTER": ["B1", "B1", "C1"],
        "SMRIN": ["6.8", "7.1", ""],
        "SEX": ["female", "male", "male"],
        "AGE": ["60-69", "50-59", "60-69"],
        "DTHHRDY": ["4", "0", "1"],
    }
    message = _error(attributes, **base, covariates=["SMGEBTCH"])
    assert "expression.covariates 'SMGEBTCH'" in message and "DTHHRDY" in message and str(phenotypes) in message


def test_tcga_covariates_from_the_labels_table_matched_by_barcode_prefix(tmp_path):
    cfg = _tcga(tmp_path)
    _write(
        tmp_path / "tcga_labels.csv",
        "sample,cancer_type,gender,tss\nTCGA-02-0047-01,GBM,MALE,02\nTCGA-06-0125-01,GBM,,06\n"
        "TCGA-A1-A0SB-01,BRCA,FEMALE,A1\n",
    )
    table = _covariates(**cfg, covariates=["gender", "tss"])
    assert list(table.index) == TCGA_ALIQUOTS
    assert table.to_dict("list") == {
        "gender": ["MALE", "", "FEMALE"],
        "tss": ["02", "06", "A1"],  # codes stay text
    }
    assert "expression.covariates 'race'" in _error(cfg["labels"], **cfg, covariates=["race"])


def test_geo_covariates_are_characteristics_or_sample_fields(tmp_path):
    """Series-matrix characteristics (gender, age: missing for the third sample) and a !Sample_ field."""
    series = _series_matrix(tmp_path, np.round(np.arange(12).reshape(3, 4) * 0.37 + 2, 3))
    base = dict(path=str(series), format="geo", label_key="subgroup", scale="normalized")
    table = _covariates(**base, covariates=["gender", "age", "source_name_ch1"])
    assert list(table.index) == GSM
    assert table.to_dict("list") == {
        "gender": ["F", "M", "M", "F"],
        "age": ["7.5", "1.2", "", "9"],
        "source_name_ch1": ["Medulloblastoma"] * 4,
    }
    message = _error(series, **base, covariates=["batch"])
    assert "expression.covariates 'batch' is not a characteristic" in message
    assert "'gender'" in message and "'source_name_ch1'" in message


def test_gdc_covariates_are_sample_sheet_columns(tmp_path):
    cfg = _gdc(tmp_path)
    table = _covariates(**cfg, covariates=["Tissue Type", "Preservation Method", "Case ID"])
    assert list(table.index) == SAMPLE_IDS[:3]  # the normal is left out by sample type
    assert table.to_dict("list") == {
        "Tissue Type": ["Tumor"] * 3,
        "Preservation Method": ["Unknown"] * 3,
        "Case ID": [s[:12] for s in SAMPLE_IDS[:3]],  # the group key may be a covariate too
    }
    message = _error(cfg["path"], **cfg, covariates=["Sample Type"])
    assert "expression.covariates 'Sample Type' is not a column" in message and "'Tissue Type'" in message


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "covariates, says",
    [(["batch", "tumour_state"], "is expression.label_key itself"), (["total_counts"], "covariates.csv writes")],
)
def test_a_covariate_that_is_the_label_or_a_qc_column_is_a_config_error(tmp_path, covariates, says):
    data = tmp_path / "data"
    data.mkdir()
    ad.AnnData(X=COUNTS.copy(), obs=pd.DataFrame({"tumour_state": CLASSES}, index=SAMPLES)).write_h5ad(
        data / "expression.h5ad"
    )
    path = write_config(tmp_path / "c.yaml", data)
    raw = yaml.safe_load(path.read_text())
    raw["expression"]["covariates"] = covariates
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as err:
        config.load(path, [])
    message = str(err.value)
    assert str(path) in message and "expression.covariates" in message and says in message and "\n" not in message


# ------------------------------------------------------------------------------------------------ QC covariates


def test_qc_covariates_equal_a_direct_computation_dense_and_sparse():
    rng = np.random.default_rng(0)
    X = rng.poisson(0.7, size=(30, 50)).astype(np.float32)
    X[3] = 0  # a sample with no reads
    total, detected = X.astype(np.float64).sum(1), (X > 0).sum(1)
    sparse = sp.csr_matrix(X)
    sparse.data[:5] = 0  # explicit zeros stored in the matrix are not genes detected
    dense_sparse = sparse.toarray()
    for chunk, expected_total, expected_detected in (
        (X, total, detected),
        (sparse, dense_sparse.astype(np.float64).sum(1), (dense_sparse > 0).sum(1)),
    ):
        qc = qc_metrics(chunk, "counts")
        np.testing.assert_array_equal(qc["total_counts"], expected_total)
        np.testing.assert_array_equal(qc["n_genes_by_counts"], expected_detected)
        assert qc["n_genes_by_counts"].dtype == np.int64
    assert set(qc_metrics(np.log1p(X), "log1p")) == {"n_genes_by_counts"}
    np.testing.assert_array_equal(qc_metrics(np.log1p(X), "log2_tpm10")["n_genes_by_counts"], detected)
    assert qc_metrics(X - 1, "normalized") == {} and qc_columns("normalized") == ()


def test_qc_covariates_are_those_of_scanpy():
    """The same names and values as sc.pp.calculate_qc_metrics (per cell)."""
    import scanpy as sc

    X = sp.csr_matrix(np.random.default_rng(1).poisson(1.2, size=(20, 40)).astype(np.float32))
    cells, _ = sc.pp.calculate_qc_metrics(ad.AnnData(X=X), percent_top=None, log1p=False)
    qc = qc_metrics(X, "counts")
    for name in ("total_counts", "n_genes_by_counts"):
        np.testing.assert_allclose(qc[name], cells[name].to_numpy())


# ------------------------------------------------------------------------------------------------ the hand-off


def test_covariates_round_trip_in_samples_order_with_augmented_rows(tmp_path):
    names = np.array(["001", "002", "003"], dtype=object)
    named = pd.DataFrame({"batch": ["NA", "", "b2"], "sex": ["male", "female", ""]})
    qc = {"total_counts": np.array([10.0, 0.0, 2.5]), "n_genes_by_counts": np.array([4, 0, 1])}
    table = covariates_table(names, named, qc, ["001~aug0"])
    samples = pd.DataFrame(
        {
            "sample": [*names, "001~aug0"],
            "label": ["a", "b", "a", "a"],
            "label_index": [0, 1, 0, 0],
            "split": ["train", "train", "test", "train"],
            "augmented_from": ["", "", "", "001"],
        }
    )
    dataset.write_samples(tmp_path / dataset.SAMPLES, samples)
    dataset.write_info(tmp_path, {"classes": ["a", "b"], "covariates": ["batch", "sex"]})
    ds = dataset.Dataset.open(tmp_path)
    assert ds.covariates() is None  # a dataset written before covariates.csv
    dataset.write_covariates(tmp_path / dataset.COVARIATES, table)
    assert (tmp_path / dataset.COVARIATES).read_text().splitlines()[1:] == [
        "001,NA,male,10.0,4",
        "002,,female,0.0,0",
        "003,b2,,2.5,1",
        "001~aug0,,,,",
    ]
    back = ds.covariates()
    assert list(back.columns) == ["sample", "batch", "sex", "total_counts", "n_genes_by_counts"]
    assert list(back["sample"]) == list(samples["sample"]) and list(back["batch"]) == ["NA", "", "b2", ""]
    assert back["n_genes_by_counts"].dtype == np.float64 and np.isnan(back["total_counts"].iloc[3])
    np.testing.assert_array_equal(back["n_genes_by_counts"].to_numpy()[:3], [4, 0, 1])
    dataset.write_covariates(tmp_path / dataset.COVARIATES, table.iloc[[1, 0, 2, 3]])
    with pytest.raises(UserError, match="run preprocess again"):
        ds.covariates()
