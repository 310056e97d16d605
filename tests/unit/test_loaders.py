"""Input readers: every format lands each value on the right sample and gene, and bad inputs stop with one line."""

from __future__ import annotations

import gzip
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shared.errors import UserError
from stages.preprocess.formats import read_expression
from stages.preprocess.formats.gtex import gtex_donor, gtex_tissue_name
from stages.preprocess.formats.tcga import match_tcga_barcodes
from stages.preprocess.params import Expression

SAMPLES = ["S1", "S2", "S3", "S4"]
GENES = ["G1", "G2", "G3", "G4", "G5"]
COUNTS = np.arange(20, dtype=np.float32).reshape(4, 5) * 3  # samples x genes, every cell distinct
CLASSES = ["AC", "MES", "AC", "NPC"]
PATIENTS = ["p1", "p1", "p2", "p3"]


def _read(**kw):
    return read_expression(Expression(**kw))


def _user_error(named, **kw) -> str:
    """The UserError message of reading the config ``kw``; it must be one line that names the file ``named``."""
    with pytest.raises(UserError) as err:
        _read(**kw)
    message = str(err.value)
    assert str(named) in message and "\n" not in message, message
    return message


def _write(path, text: str, gz: bool = False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _matrix_text(rows, cols, values, sep=",", corner="id") -> str:
    lines = [sep.join([corner, *cols])]
    lines += [sep.join([r, *map(str, row)]) for r, row in zip(rows, values, strict=False)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def labels_csv(tmp_path):
    # an extra sample (S9) with no matrix column: ignored
    rows = [f"{s},{c},{p}" for s, c, p in zip(SAMPLES, CLASSES, PATIENTS, strict=False)] + ["S9,OPC,p9"]
    return _write(tmp_path / "labels.csv", "sample,tumour_state,patient\n" + "\n".join(rows) + "\n")


def _csv_config(matrix, labels, **kw):
    return dict(path=str(matrix), format="csv", labels=str(labels), label_key="tumour_state", **kw)


# ------------------------------------------------------------------------------------------------ csv / tsv


def _assert_counts(adata):
    assert list(adata.obs_names) == SAMPLES and list(adata.var_names) == GENES
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, COUNTS)
    assert adata.X[1, 3] == 24 and adata.X[3, 0] == 45  # S2/G4 and S4/G1


def test_csv_samples_x_genes(tmp_path, labels_csv, caplog):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    with caplog.at_level(logging.INFO):
        adata = _read(**_csv_config(matrix, labels_csv, group_key="patient"))
    _assert_counts(adata)
    assert list(adata.obs["label"]) == CLASSES and list(adata.obs["group"]) == PATIENTS
    assert "symbol" not in adata.var
    assert "1 of 5 rows name no sample" in caplog.text  # S9 of the labels table: ignored, and said so


def test_tsv_genes_x_samples_gz_is_detected_and_transposed(tmp_path, labels_csv):
    # columns shuffled, so that a wrong transpose or a positional join would show
    order = [2, 0, 3, 1]
    text = _matrix_text(GENES, [SAMPLES[i] for i in order], COUNTS[order].T, sep="\t", corner="gene")
    matrix = _write(tmp_path / "m.tsv.gz", text, gz=True)
    adata = _read(**{**_csv_config(matrix, labels_csv), "format": "tsv"})
    assert list(adata.obs_names) == [SAMPLES[i] for i in order]
    np.testing.assert_array_equal(adata.X, COUNTS[order])
    assert adata.obs.loc["S4", "label"] == "NPC" and adata["S2", "G4"].X[0, 0] == 24


def test_explicit_orientation_and_a_sniffed_labels_separator(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(GENES, SAMPLES, COUNTS.T))
    labels_txt = _write(tmp_path / "labels.txt", labels_csv.read_text())  # comma separated despite the name
    _assert_counts(_read(**_csv_config(matrix, labels_txt, orientation="genes_x_samples")))


def test_r_style_header_without_corner_cell(tmp_path, labels_csv):
    text = (
        "\t".join(GENES)
        + "\n"
        + "".join("\t".join([s, *map(str, row)]) + "\n" for s, row in zip(SAMPLES, COUNTS, strict=False))
    )
    matrix = _write(tmp_path / "m.tsv", text)
    _assert_counts(_read(**{**_csv_config(matrix, labels_csv), "format": "tsv"}))


def test_orientation_error_when_no_axis_matches_the_labels(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(["X1", "X2"], ["Y1", "Y2"], [[1, 2], [3, 4]]))
    assert "match the sample ids" in _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_orientation_error_when_both_axes_match(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, SAMPLES, np.ones((4, 4), int)))
    assert "orientation" in _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_samples_missing_from_labels_are_left_out_and_counted(tmp_path, labels_csv, caplog):
    """The labels table selects the samples: matrix samples without a row there are not read (logged)."""
    for orientation, values in (
        ("samples_x_genes", np.arange(30).reshape(6, 5)),
        ("genes_x_samples", np.arange(30).reshape(5, 6)),
    ):
        samples, genes = [*SAMPLES, "S5", "S6"], GENES
        rows, cols = (samples, genes) if orientation == "samples_x_genes" else (genes, samples)
        matrix = _write(tmp_path / f"{orientation}.csv", _matrix_text(rows, cols, values))
        for configured in ("auto", orientation):
            caplog.clear()
            with caplog.at_level("INFO"):
                adata = _read(**_csv_config(matrix, labels_csv, orientation=configured))
            assert list(adata.obs_names) == SAMPLES
            expected = values[:4] if orientation == "samples_x_genes" else values[:, :4].T
            np.testing.assert_array_equal(adata.X, expected.astype(np.float32))
            assert "2 of 6 samples" in caplog.text


def test_no_labelled_sample_is_an_error(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(GENES, ["S7", "S8", *SAMPLES[:1]], np.ones((5, 3), int)))
    labels = _write(tmp_path / "l.csv", "sample,tumour_state\nS9,a\nS10,b\n")
    for orientation in ("genes_x_samples", "samples_x_genes"):
        assert "labelled sample" in _user_error(matrix, **_csv_config(matrix, labels, orientation=orientation))


# ------------------------------------------------------------------------------------------------ GTEx GCT

GTEX_GENES = ["ENSG00000223972.5", "ENSG00000227232.5", "ENSG00000243485.5"]
GTEX_SYMBOLS = ["DDX11L1", "WASH7P", "MIR1302-2HG"]
LUNG = ["GTEX-1117F-0526-SM-5EGHJ", "GTEX-111CU-1826-SM-5GZYN"]
BLOOD = ["GTEX-1117F-0003-SM-58Q7G", "GTEX-111FC-0001-SM-58Q7H", "GTEX-111VG-0004-SM-5GZXY"]


def _gct_text(genes, symbols, samples, values) -> str:
    """GCT 1.2 as GTEx v8 writes it; values genes x samples."""
    lines = ["#1.2", f"{len(genes)}\t{len(samples)}", "\t".join(["Name", "Description", *samples])]
    lines += ["\t".join([g, s, *map(str, row)]) for g, s, row in zip(genes, symbols, values, strict=False)]
    return "\n".join(lines) + "\n"


def _attributes(tmp_path, with_donor_column=False):
    """A GTEx sample-attribute table (tab separated, .txt), with one sample that has no GCT (ignored)."""
    tissues = {
        **{s: "Lung" for s in LUNG},
        **{s: "Whole Blood" for s in BLOOD},
        "GTEX-1117F-0011-R10a-SM-AHZ7F": "Brain - Frontal Cortex (BA9)",
    }
    header = ["SAMPID", "SMATSSCR", "SMTS", "SMTSD"] + (["donor"] if with_donor_column else [])
    rows = [
        "\t".join([s, "1", t.split(" - ")[0], t] + (["d" + s[5:9]] if with_donor_column else []))
        for s, t in tissues.items()
    ]
    text = "\n".join(["\t".join(header), *rows]) + "\n"
    return _write(tmp_path / "GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt", text)


@pytest.fixture
def gtex(tmp_path):
    lung = np.array([[0, 7], [1, 8], [2, 9]])
    blood = np.array([[10, 13, 16], [11, 14, 17], [12, 15, 18]])
    lung_path = _write(
        tmp_path / "gene_reads_2017-06-05_v8_lung.gct.gz", _gct_text(GTEX_GENES, GTEX_SYMBOLS, LUNG, lung), gz=True
    )
    blood_path = _write(
        tmp_path / "gene_reads_2017-06-05_v8_whole_blood.gct.gz",
        _gct_text(GTEX_GENES, GTEX_SYMBOLS, BLOOD, blood),
        gz=True,
    )
    return lung_path, blood_path, _attributes(tmp_path)


def _gct_config(lung, blood, attributes, **kw):
    return dict(path=str(lung), more_paths=[str(blood)], format="gct", labels=str(attributes), label_key="SMTSD", **kw)


def test_gct_two_tissues_concatenated_with_symbols_tissues_and_donors(gtex):
    adata = _read(**_gct_config(*gtex, group_key="donor"))
    assert list(adata.obs_names) == LUNG + BLOOD
    assert list(adata.var_names) == GTEX_GENES and list(adata.var["symbol"]) == GTEX_SYMBOLS
    assert adata.X.dtype == np.float32 and adata.X.shape == (5, 3)
    assert adata[LUNG[1], "ENSG00000227232.5"].X[0, 0] == 8
    assert adata[BLOOD[2], "ENSG00000243485.5"].X[0, 0] == 18
    assert list(adata.obs["label"]) == ["lung"] * 2 + ["whole_blood"] * 3
    assert list(adata.obs["group"]) == ["GTEX-1117F", "GTEX-111CU", "GTEX-1117F", "GTEX-111FC", "GTEX-111VG"]


def test_gct_per_tissue_files_with_the_id_column_and_repeated_symbols(tmp_path):
    """GTEx v8's per-tissue read counts (gene_reads_2017-06-05_v8_<tissue>.gct.gz) lead with a row-number column
    `id` before Name and Description; symbols repeat (Y_RNA, Metazoa_SRP): ids stay ENSEMBL, symbols for display."""
    genes = [*GTEX_GENES, "ENSG00000199916.1", "ENSG00000201317.1"]
    symbols = [*GTEX_SYMBOLS, "Y_RNA", "Y_RNA"]

    def per_tissue(samples, values):
        lines = ["#1.2", f"{len(genes)}\t{len(samples)}", "\t".join(["id", "Name", "Description", *samples])]
        lines += [
            "\t".join([str(i), g, s, *map(str, row)])
            for i, (g, s, row) in enumerate(zip(genes, symbols, values, strict=False))
        ]
        return "\n".join(lines) + "\n"

    lung = np.arange(10).reshape(5, 2)
    blood = 100 + np.arange(15).reshape(5, 3)
    lung_path = _write(tmp_path / "gene_reads_2017-06-05_v8_lung.gct.gz", per_tissue(LUNG, lung), gz=True)
    blood_path = _write(tmp_path / "gene_reads_2017-06-05_v8_whole_blood.gct.gz", per_tissue(BLOOD, blood), gz=True)
    adata = _read(**_gct_config(lung_path, blood_path, _attributes(tmp_path), group_key="donor"))
    assert list(adata.obs_names) == LUNG + BLOOD and list(adata.var_names) == genes
    assert list(adata.var["symbol"]) == symbols
    assert list(adata.obs["SMTSD"]) == ["Lung"] * 2 + ["Whole Blood"] * 3
    assert adata.X[1, 4] == lung[4, 1] and adata.X[4, 3] == blood[3, 2]  # not shifted by the id column


def test_gct_group_column_of_the_table_is_used_when_present(tmp_path, gtex):
    attributes = _attributes(tmp_path, with_donor_column=True)
    adata = _read(**_gct_config(gtex[0], gtex[1], attributes, group_key="donor"))
    assert list(adata.obs["group"])[:2] == ["d1117", "d111C"]


def test_gct_files_with_the_same_genes_in_another_order_are_aligned(tmp_path, gtex):
    order = [2, 0, 1]
    blood = np.array([[10, 13, 16], [11, 14, 17], [12, 15, 18]])[order]
    other = _write(
        tmp_path / "blood.gct",
        _gct_text([GTEX_GENES[i] for i in order], [GTEX_SYMBOLS[i] for i in order], BLOOD, blood),
    )
    adata = _read(**_gct_config(gtex[0], other, gtex[2]))
    assert list(adata.var["symbol"]) == GTEX_SYMBOLS
    assert adata[BLOOD[2], "ENSG00000243485.5"].X[0, 0] == 18


def test_gct_files_with_different_genes_are_an_error(tmp_path, gtex):
    other = _write(
        tmp_path / "other.gct.gz",
        _gct_text(["ENSG00000000003.14", *GTEX_GENES[1:]], GTEX_SYMBOLS, BLOOD, np.ones((3, 3), int)),
        gz=True,
    )
    assert "ENSG00000000003.14" in _user_error(other, **_gct_config(gtex[0], other, gtex[2]))


def test_gct_declaring_more_genes_than_it_holds_is_an_error(tmp_path, gtex):
    text = _gct_text(GTEX_GENES, GTEX_SYMBOLS, LUNG, np.ones((3, 2), int)).replace("3\t2", "5\t2", 1)
    short = _write(tmp_path / "short.gct", text)
    assert "declares 5 genes" in _user_error(short, **_gct_config(short, gtex[1], gtex[2]))


def test_gct_sample_in_two_files_is_an_error(gtex):
    assert "duplicate sample id" in _user_error(gtex[0], **_gct_config(gtex[0], gtex[0], gtex[2]))


def test_not_a_gct_file(tmp_path, gtex):
    plain = _write(tmp_path / "plain.gct", _matrix_text(GENES, SAMPLES, COUNTS.T, sep="\t"))
    assert "#1.2" in _user_error(plain, **_gct_config(plain, gtex[1], gtex[2]))


# The 54 GTEx v8 tissues (SMTSD) and the class names of the GTEx prior art (seed 002's per-class table).
SMTSD = [
    "Adipose - Subcutaneous",
    "Adipose - Visceral (Omentum)",
    "Adrenal Gland",
    "Artery - Aorta",
    "Artery - Coronary",
    "Artery - Tibial",
    "Bladder",
    "Brain - Amygdala",
    "Brain - Anterior cingulate cortex (BA24)",
    "Brain - Caudate (basal ganglia)",
    "Brain - Cerebellar Hemisphere",
    "Brain - Cerebellum",
    "Brain - Cortex",
    "Brain - Frontal Cortex (BA9)",
    "Brain - Hippocampus",
    "Brain - Hypothalamus",
    "Brain - Nucleus accumbens (basal ganglia)",
    "Brain - Putamen (basal ganglia)",
    "Brain - Spinal cord (cervical c-1)",
    "Brain - Substantia nigra",
    "Breast - Mammary Tissue",
    "Cells - Cultured fibroblasts",
    "Cells - EBV-transformed lymphocytes",
    "Cervix - Ectocervix",
    "Cervix - Endocervix",
    "Colon - Sigmoid",
    "Colon - Transverse",
    "Esophagus - Gastroesophageal Junction",
    "Esophagus - Mucosa",
    "Esophagus - Muscularis",
    "Fallopian Tube",
    "Heart - Atrial Appendage",
    "Heart - Left Ventricle",
    "Kidney - Cortex",
    "Kidney - Medulla",
    "Liver",
    "Lung",
    "Minor Salivary Gland",
    "Muscle - Skeletal",
    "Nerve - Tibial",
    "Ovary",
    "Pancreas",
    "Pituitary",
    "Prostate",
    "Skin - Not Sun Exposed (Suprapubic)",
    "Skin - Sun Exposed (Lower leg)",
    "Small Intestine - Terminal Ileum",
    "Spleen",
    "Stomach",
    "Testis",
    "Thyroid",
    "Uterus",
    "Vagina",
    "Whole Blood",
]
PRIOR_ART_CLASSES = """
whole_blood brain_frontal_cortex_ba9 adipose_subcutaneous muscle_skeletal artery_tibial artery_coronary
heart_atrial_appendage adipose_visceral_omentum ovary uterus vagina breast_mammary_tissue
skin_not_sun_exposed_suprapubic minor_salivary_gland brain_cortex adrenal_gland thyroid lung spleen pancreas
esophagus_muscularis esophagus_mucosa esophagus_gastroesophageal_junction stomach colon_sigmoid
small_intestine_terminal_ileum colon_transverse prostate testis skin_sun_exposed_lower_leg nerve_tibial
heart_left_ventricle pituitary brain_cerebellum cells_cultured_fibroblasts artery_aorta
cells_ebv-transformed_lymphocytes brain_cerebellar_hemisphere brain_caudate_basal_ganglia
brain_nucleus_accumbens_basal_ganglia brain_putamen_basal_ganglia brain_hypothalamus brain_spinal_cord_cervical_c-1
liver brain_hippocampus brain_anterior_cingulate_cortex_ba24 brain_substantia_nigra kidney_cortex brain_amygdala
cervix_ectocervix fallopian_tube cervix_endocervix bladder kidney_medulla
""".split()


def test_tissue_names_are_those_of_the_gtex_prior_art():
    assert len(PRIOR_ART_CLASSES) == 54
    assert sorted(gtex_tissue_name(t) for t in SMTSD) == sorted(PRIOR_ART_CLASSES)
    assert gtex_tissue_name("Brain - Spinal cord (cervical c-1)") == "brain_spinal_cord_cervical_c-1"
    assert gtex_tissue_name("Cells - EBV-transformed lymphocytes") == "cells_ebv-transformed_lymphocytes"


def test_gtex_donor():
    assert gtex_donor("GTEX-1117F-0226-SM-5GZZ7") == "GTEX-1117F"


# ------------------------------------------------------------------------------------------------ TCGA

TCGA_ALIQUOTS = ["TCGA-02-0047-01A-01R-1849-01", "TCGA-06-0125-01A-01R-1849-01", "TCGA-A1-A0SB-01A-11R-A144-07"]
TCGA_GENES = ["TP53|7157", "EGFR|1956", "?|100130426"]


def _tcga(tmp_path, aliquots=TCGA_ALIQUOTS, label_ids=("TCGA-02-0047-01", "TCGA-06-0125-01", "TCGA-A1-A0SB-01")):
    values = np.array([[1.5, 2.25, 0.0], [10, 20, 30], [0, 0, 4]])  # genes x samples
    matrix = _write(
        tmp_path / "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv",
        _matrix_text(TCGA_GENES, list(aliquots), values, sep="\t", corner="gene_id"),
    )
    rows = [f"{s},{t}" for s, t in zip(label_ids, ["GBM", "GBM", "BRCA"], strict=False)] + ["TCGA-99-9999-01,LUAD"]
    labels = _write(tmp_path / "tcga_labels.csv", "sample,cancer_type\n" + "\n".join(rows) + "\n")
    return dict(path=str(matrix), format="tcga", labels=str(labels), label_key="cancer_type")


def test_tcga_long_barcodes_match_the_labels_sample_ids(tmp_path):
    adata = _read(**_tcga(tmp_path))
    assert list(adata.obs_names) == TCGA_ALIQUOTS
    assert list(adata.obs["label"]) == ["GBM", "GBM", "BRCA"]
    assert list(adata.var_names) == TCGA_GENES and list(adata.var["symbol"]) == ["TP53", "EGFR", "?"]
    assert adata.X.shape == (3, 3)
    assert adata[TCGA_ALIQUOTS[1], "TP53|7157"].X[0, 0] == 2.25
    assert adata[TCGA_ALIQUOTS[2], "?|100130426"].X[0, 0] == 4


def test_tcga_barcode_rule():
    labels = ["TCGA-02-0047", "TCGA-02-0047-01", "S1"]
    assert match_tcga_barcodes(
        ["TCGA-02-0047-01A-01R-1849-01", "TCGA-02-0047-11A-01R-1849-01", "S1", "S10"], labels
    ) == ["TCGA-02-0047-01", "TCGA-02-0047", "S1", None]


def test_tcga_nothing_matches(tmp_path):
    cfg = _tcga(tmp_path, label_ids=("TCGA-AA-0001-01", "TCGA-AA-0002-01", "TCGA-AA-0003-01"))
    assert "no sample barcode" in _user_error(cfg["path"], **cfg)


# ------------------------------------------------------------------------------------------------ h5ad


def test_h5ad_x_layer_and_raw(tmp_path):
    adata = ad.AnnData(
        X=COUNTS.copy(),
        obs=pd.DataFrame({"state": CLASSES}, index=SAMPLES),
        var=pd.DataFrame(index=GENES),
        layers={"counts": COUNTS * 2},
    )
    adata.raw = ad.AnnData(X=COUNTS + 1, var=pd.DataFrame(index=GENES))
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    base = dict(path=str(path), label_key="state")
    np.testing.assert_array_equal(_read(**base).X, COUNTS)
    np.testing.assert_array_equal(_read(**base, layer="counts").X, COUNTS * 2)
    raw = _read(**base, use_raw=True)
    np.testing.assert_array_equal(raw.X, COUNTS + 1)
    assert list(raw.obs["label"]) == CLASSES


def test_h5ad_sparse_negative_value_is_located(tmp_path):
    X = COUNTS.copy()
    X[2, 4] = -1
    adata = ad.AnnData(
        X=sp.csr_matrix(X), obs=pd.DataFrame({"state": CLASSES}, index=SAMPLES), var=pd.DataFrame(index=GENES)
    )
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    assert "sample 'S3', gene 'G5'" in _user_error(path, path=str(path), label_key="state")


def test_truncated_h5ad(tmp_path):
    adata = ad.AnnData(X=COUNTS.copy(), obs=pd.DataFrame({"state": CLASSES}, index=SAMPLES))
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _user_error(path, path=str(path), label_key="state")


def test_non_hdf5_h5ad(tmp_path):
    path = _write(tmp_path / "x.h5ad", "sample,gene\n1,2\n")
    _user_error(path, path=str(path), label_key="state")


# ------------------------------------------------------------------------------------------------ bad inputs


def test_missing_label_column_names_the_columns(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    message = _user_error(labels_csv, **{**_csv_config(matrix, labels_csv), "label_key": "tissue"})
    assert "'tumour_state'" in message and "'patient'" in message


def test_missing_group_column(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    _user_error(labels_csv, **_csv_config(matrix, labels_csv, group_key="donor"))


def test_labels_file_without_the_sample_column(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    assert "'barcode'" in _user_error(labels_csv, **_csv_config(matrix, labels_csv, sample_column="barcode"))


def test_labels_file_is_required(tmp_path):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    with pytest.raises(UserError, match="expression.labels is required"):
        _read(path=str(matrix), format="csv", label_key="tumour_state")


def test_missing_label_values(tmp_path):
    labels = _write(tmp_path / "l.csv", "sample,tumour_state\nS1,AC\nS2,\nS3,AC\nS4,NPC\n")
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    assert "'S2'" in _user_error(labels, **_csv_config(matrix, labels))


def test_non_numeric_value_is_located(tmp_path, labels_csv):
    values = COUNTS.astype(object)
    values[2, 3] = "12,5".replace(",", ";")  # a European decimal gone wrong
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, values))
    message = _user_error(matrix, **_csv_config(matrix, labels_csv))
    assert "'12;5'" in message and "'S3'" in message and "'G4'" in message


@pytest.mark.parametrize("bad", ["nan", "", "inf"])
def test_nan_and_inf_are_located(tmp_path, labels_csv, bad):
    values = COUNTS.astype(object)
    values[1, 2] = bad
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, values))
    message = _user_error(matrix, **_csv_config(matrix, labels_csv))
    assert "NaN or inf" in message and "'S2'" in message and "'G3'" in message


def test_negative_counts_unless_normalized(tmp_path, labels_csv):
    values = COUNTS.copy()
    values[0, 1] = -0.5
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, values))
    assert "scale: normalized" in _user_error(matrix, **_csv_config(matrix, labels_csv))
    assert _read(**_csv_config(matrix, labels_csv, scale="normalized")).X[0, 1] == -0.5


def test_each_declared_scale_reaches_natural_log_expression():
    """counts: library size then log1p; log2(TPM/10+1) becomes ln(TPM/10+1); log1p and normalized stay as they are."""
    from stages.preprocess.normalize import to_log1p

    tpm = np.array([[0.0, 90.0, 910.0], [40.0, 0.0, 2550.0]])
    log2_tpm10 = np.log2(tpm / 10 + 1)
    assert to_log1p(log2_tpm10, "log2_tpm10", 1e4) == pytest.approx(np.log1p(tpm / 10), rel=1e-6)
    counts = np.array([[1.0, 3.0, 6.0], [0.0, 5.0, 5.0]])
    assert to_log1p(counts, "counts", 10.0) == pytest.approx(np.log1p(counts / counts.sum(1, keepdims=True) * 10))
    for scale in ("log1p", "normalized"):
        assert to_log1p(log2_tpm10, scale, 1e4) == pytest.approx(log2_tpm10)


def test_values_that_look_logged_but_are_declared_counts_draw_a_warning():
    from stages.preprocess.normalize import LoggedCheck

    def warning(*chunks):
        check = LoggedCheck()
        for chunk in chunks:
            check.update(chunk)
        return check.warning("m.tsv")

    logged = np.log2(np.array([[0.0, 90.0], [40.0, 5490.0]]) / 10 + 1)
    message = warning(logged[:1], sp.csr_matrix(logged[1:]))
    assert message.startswith("m.tsv:") and "expression.scale" in message and "log2_tpm10" in message
    assert warning(np.array([[0.0, 3.0], [12.0, 7.0]])) is None  # counts: whole numbers
    assert warning(np.array([[0.5, 3.25], [812.5, 7.0]])) is None  # TPM: fractions, but far above any log value


def test_the_retired_normalized_key_names_its_replacement():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="expression.scale: write scale: normalized"):
        Expression(path="m.csv", label_key="x", normalized=True)


def test_duplicate_gene_ids(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, ["G1", "G2", "G2", "G4", "G5"], COUNTS))
    assert "duplicate gene ids" in _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_duplicate_gene_ids_in_gct(tmp_path, gtex):
    text = _gct_text([GTEX_GENES[0]] * 3, GTEX_SYMBOLS, LUNG, np.ones((3, 2), int))
    dup = _write(tmp_path / "dup.gct.gz", text, gz=True)
    assert "duplicate gene ids" in _user_error(dup, **_gct_config(dup, gtex[1], gtex[2]))


def test_duplicate_sample_ids(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", _matrix_text(GENES, ["S1", "S2", "S2", "S4"], COUNTS.T))
    assert "duplicate sample ids" in _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_duplicate_sample_ids_in_labels(tmp_path):
    labels = _write(tmp_path / "l.csv", "sample,tumour_state\nS1,AC\nS2,MES\nS2,AC\nS3,AC\nS4,NPC\n")
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    assert "duplicate sample ids" in _user_error(labels, **_csv_config(matrix, labels))


@pytest.mark.parametrize("gz", [False, True])
def test_empty_matrix_file(tmp_path, labels_csv, gz):
    matrix = _write(tmp_path / ("m.csv.gz" if gz else "m.csv"), "", gz=gz)
    assert "empty" in _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_header_only_matrix_file(tmp_path, labels_csv):
    matrix = _write(tmp_path / "m.csv", "id," + ",".join(GENES) + "\n")
    _user_error(matrix, **_csv_config(matrix, labels_csv))


def test_empty_labels_file(tmp_path):
    labels = _write(tmp_path / "l.csv", "")
    matrix = _write(tmp_path / "m.csv", _matrix_text(SAMPLES, GENES, COUNTS))
    assert "empty" in _user_error(labels, **_csv_config(matrix, labels))


def _truncated_gz(path, text):
    data = gzip.compress(text.encode())
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def test_truncated_gz_matrix(tmp_path, labels_csv):
    rng = np.random.default_rng(0)
    many = [f"G{i}" for i in range(2000)]
    text = _matrix_text(many, SAMPLES, rng.integers(0, 1000, (2000, 4)), sep="\t")
    matrix = _truncated_gz(tmp_path / "m.tsv.gz", text)
    assert "truncated" in _user_error(matrix, **{**_csv_config(matrix, labels_csv), "format": "tsv"})


def test_truncated_gct(tmp_path, gtex):
    rng = np.random.default_rng(0)
    genes = [f"ENSG{i:011d}.1" for i in range(3000)]
    lung = _truncated_gz(tmp_path / "lung.gct.gz", _gct_text(genes, genes, LUNG, rng.integers(0, 1000, (3000, 2))))
    assert "truncated" in _user_error(lung, **{**_gct_config(lung, gtex[1], gtex[2]), "more_paths": []})


def test_not_gzip_despite_the_name(tmp_path, labels_csv):
    # content decides, not the name: a plain file called .gz reads fine
    matrix = _write(tmp_path / "m.csv.gz", _matrix_text(SAMPLES, GENES, COUNTS))
    _assert_counts(_read(**_csv_config(matrix, labels_csv)))
