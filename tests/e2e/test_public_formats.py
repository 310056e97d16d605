"""Each public source's files, written here exactly in the layout the source ships (header lines, column order,
quoting, compression, extra rows, missing values), read by the loader: labels, sample-gene alignment, a value or two.

Layouts follow the sources' own documentation: GTEx v8 GCT 1.2 and its annotation tables (GTEx portal, data
dictionaries), GEO series matrix files (NCBI GEO "Series Matrix File" format), GDC STAR gene counts and the cart's
sample sheet (GDC data release 32 on), the TCGA pan-cancer matrix (PanCanAtlas EBPlusPlus), and a Single Cell Portal
metadata file (NAME/TYPE header rows) beside a GEO TPM matrix (genes x cells).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from shared.errors import UserError
from stages.preprocess.formats import read_expression
from stages.preprocess.formats.geo import read_series_matrix
from stages.preprocess.params import Expression

from ..support import REPO


def _read(**kw):
    return read_expression(Expression(**kw))


def _error(named, **kw) -> str:
    with pytest.raises(UserError) as err:
        _read(**kw)
    message = str(err.value)
    assert str(named) in message and "\n" not in message, message
    return message


def _write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def _tsv(rows) -> str:
    return "".join("\t".join(map(str, row)) + "\n" for row in rows)


# ------------------------------------------------------------------------------------------------ GTEx v8

GENES = ["ENSG00000223972.5", "ENSG00000227232.5", "ENSG00000199916.1", "ENSG00000201317.1"]
SYMBOLS = ["DDX11L1", "WASH7P", "Y_RNA", "Y_RNA"]
SAMPLES = ["GTEX-1117F-0226-SM-5GZZ7", "GTEX-111CU-1826-SM-5GZYN", "GTEX-111FC-0226-SM-5N9B8"]


def _gtex_tables(tmp_path):
    """The sample-attribute table (every GTEx sample: far more rows than any file holds, many empty fields) and the
    subject-phenotype table, tab separated, as the portal serves them."""
    attr_header = ["SAMPID", "SMATSSCR", "SMCENTER", "SMPTHNTS", "SMRIN", "SMTS", "SMTSD", "SMUBRID", "SMTSISCH"]
    rows = [
        attr_header,
        ["GTEX-1117F-0003-SM-58Q7G", "", "B1", "", "", "Blood", "Whole Blood", "0013756", "1188"],
        [
            "GTEX-1117F-0226-SM-5GZZ7",
            "0",
            "B1",
            "2 pieces, ~15% vessel stroma, rep delineated",
            "6.8",
            "Adipose Tissue",
            "Adipose - Subcutaneous",
            "0002190",
            "1214",
        ],
        ["GTEX-111CU-1826-SM-5GZYN", "1", "B1", "", "7.1", "Lung", "Lung", "0008952", ""],
        ["GTEX-111FC-0226-SM-5N9B8", "", "C1", "", "", "Adipose Tissue", "Adipose - Subcutaneous", "0002190", ""],
        ["K-562-SM-26GMQ", "", "C1", "", "", "Bone Marrow", "Cells - Leukemia cell line (CML)", "", ""],
    ]
    attributes = _write(tmp_path / "GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt", _tsv(rows))
    phenotypes = _write(
        tmp_path / "GTEx_Analysis_v8_Annotations_SubjectPhenotypesDS.txt",
        _tsv(
            [
                ["SUBJID", "SEX", "AGE", "DTHHRDY"],
                ["GTEX-1117F", 2, "60-69", 4],
                ["GTEX-111CU", 1, "50-59", 0],
                ["GTEX-111FC", 1, "60-69", 1],
                ["GTEX-111VG", 1, "60-69", ""],
            ]
        ),
    )
    return attributes, phenotypes


def _all_tissue_gct(tmp_path, values) -> Path:
    """The all-tissue matrix (GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.gct.gz): no id column."""
    rows = [["#1.2"], [len(GENES), len(SAMPLES)], ["Name", "Description", *SAMPLES]]
    rows += [[g, s, *v] for g, s, v in zip(GENES, SYMBOLS, values, strict=False)]
    return _write(tmp_path / "GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.gct.gz", _tsv(rows), gz=True)


def test_gtex_all_tissue_gct_with_phenotypes_as_labels_and_donors_as_groups(tmp_path):
    values = np.arange(12).reshape(4, 3) * 10  # genes x samples
    attributes, phenotypes = _gtex_tables(tmp_path)
    gct = _all_tissue_gct(tmp_path, values)
    adata = _read(
        path=str(gct),
        format="gct",
        labels=str(attributes),
        phenotypes=str(phenotypes),
        label_key="AGE",
        group_key="donor",
    )
    assert list(adata.obs_names) == SAMPLES and list(adata.var_names) == GENES
    assert list(adata.var["symbol"]) == SYMBOLS  # repeated symbols kept, ids distinct
    assert list(adata.obs["label"]) == ["60-69", "50-59", "60-69"]
    assert list(adata.obs["group"]) == ["GTEX-1117F", "GTEX-111CU", "GTEX-111FC"]
    assert adata.X[1, 3] == values[3, 1] and adata.X[2, 0] == values[0, 2]
    sex = _read(path=str(gct), format="gct", labels=str(attributes), phenotypes=str(phenotypes), label_key="SEX")
    assert list(sex.obs["label"]) == ["female", "male", "male"]
    tissue = _read(path=str(gct), format="gct", labels=str(attributes), label_key="SMTSD")
    assert list(tissue.obs["label"]) == ["adipose_subcutaneous", "lung", "adipose_subcutaneous"]


def test_gtex_gct_header_naming_fewer_samples_than_line_2_declares(tmp_path):
    attributes, _ = _gtex_tables(tmp_path)
    rows = [["#1.2"], [len(GENES), 4], ["Name", "Description", *SAMPLES]]
    rows += [[g, s, 1, 2, 3] for g, s in zip(GENES, SYMBOLS, strict=False)]
    gct = _write(tmp_path / "short_header.gct", _tsv(rows))
    message = _error(gct, path=str(gct), format="gct", labels=str(attributes), label_key="SMTSD")
    assert "declares 4 samples but the header names 3" in message and "Download it again" in message


def test_gtex_attribute_table_without_smtsd(tmp_path):
    gct = _all_tissue_gct(tmp_path, np.ones((4, 3), int))
    table = _write(tmp_path / "attributes.txt", _tsv([["SAMPID", "SMTS"], *[[s, "Lung"] for s in SAMPLES]]))
    message = _error(table, path=str(gct), format="gct", labels=str(table), label_key="SMTSD")
    assert "'SMTSD' is not a column" in message and "SMTS" in message


def test_a_label_table_that_matches_no_sample(tmp_path):
    gct = _all_tissue_gct(tmp_path, np.ones((4, 3), int))
    table = _write(tmp_path / "attributes.txt", _tsv([["SAMPID", "SMTSD"], ["GTEX-ZZZZ-0001-SM-1", "Lung"]]))
    message = _error(table, path=str(gct), format="gct", labels=str(table), label_key="SMTSD")
    assert "names a sample of" in message and "sample_column" in message


# ------------------------------------------------------------------------------------------------ GEO series matrix

GSM = ["GSM2261544", "GSM2261545", "GSM2261546", "GSM2261547"]
TITLES = ["MB_SubtypeStudy_001", "MB_SubtypeStudy_002", "MB_SubtypeStudy_003", "MB_SubtypeStudy_004"]
SUBGROUPS = ["WNT", "SHH", "Group3", "Group4"]
PROBES = ["16657436", "16657440", "16657450"]


def _q(cells) -> str:
    return "\t".join(f'"{c}"' for c in cells)


def _series_matrix(tmp_path, values=None, subgroup=True) -> Path:
    """A series matrix as GEO writes it: quoted !Series_/!Sample_ cells, a blank line, repeated
    !Sample_characteristics_ch1 lines whose keys are not aligned across samples (sample 3 has no age, so its gender
    sits on the age line), then the data table (or none)."""
    lines = [
        '!Series_title\t"Medulloblastomics revisited: a test series"',
        '!Series_geo_accession\t"GSE85217"',
        '!Series_status\t"Public on Jun 01 2017"',
        '!Series_platform_id\t"GPL22286"',
        "",
        "!Sample_title\t" + _q(TITLES),
        "!Sample_geo_accession\t" + _q(GSM),
        "!Sample_status\t" + _q(["Public on Jun 01 2017"] * 4),
        "!Sample_source_name_ch1\t" + _q(["Medulloblastoma"] * 4),
        "!Sample_organism_ch1\t" + _q(["Homo sapiens"] * 4),
    ]
    if subgroup:
        lines.append("!Sample_characteristics_ch1\t" + _q(f"subgroup: {s}" for s in SUBGROUPS))
    lines += [
        "!Sample_characteristics_ch1\t"
        + _q(["subtype: WNT_alpha", "subtype: SHH_beta", "subtype: Group3_gamma", "subtype: Group4_alpha"]),
        "!Sample_characteristics_ch1\t" + _q(["age: 7.5", "age: 1.2", "gender: M", "age: 9"]),
        "!Sample_characteristics_ch1\t" + _q(["gender: F", "gender: M", "", "gender: F"]),
        "!Sample_description\t" + _q(TITLES),
        "!Sample_data_row_count\t" + _q([len(PROBES) if values is not None else 0] * 4),
        "!series_matrix_table_begin",
    ]
    if values is not None:
        lines.append(_q(["ID_REF", *GSM]))
        lines += [f'"{p}"\t' + "\t".join(map(str, row)) for p, row in zip(PROBES, values, strict=False)]
    lines.append("!series_matrix_table_end")
    return _write(tmp_path / "GSE85217_series_matrix.txt.gz", "\n".join(lines) + "\n", gz=True)


def test_geo_series_matrix_characteristics_are_parsed_per_cell(tmp_path):
    series = read_series_matrix(_series_matrix(tmp_path))
    assert list(series.samples.index) == GSM and list(series.samples["subgroup"]) == SUBGROUPS
    assert list(series.samples["gender"]) == ["F", "M", "M", "F"]  # sample 3's gender on the age line
    assert series.samples["age"].isna().tolist() == [False, False, True, False]
    assert series.keys == ["subgroup", "subtype", "age", "gender"] and series.table_line is None


def test_geo_series_matrix_with_its_data_table(tmp_path):
    values = np.round(np.arange(12).reshape(3, 4) * 0.37 + 2, 3)  # probes x samples (log2 RMA-like)
    path = _series_matrix(tmp_path, values)
    adata = _read(path=str(path), format="geo", label_key="subgroup", scale="normalized")
    assert list(adata.obs_names) == GSM and list(adata.var_names) == PROBES
    assert list(adata.obs["label"]) == SUBGROUPS and adata.obs.loc[GSM[0], "subtype"] == "WNT_alpha"
    assert adata.X[2, 1] == pytest.approx(values[1, 2]) and adata.X[3, 0] == pytest.approx(values[0, 3])


def test_geo_supplementary_matrix_matched_by_title(tmp_path):
    """GSE85217_M_exp_763_MB_SubtypeStudy_TaylorLab.txt.gz: five annotation columns (Probe.Set.Name first, symbols in
    HGNC_symbol_from_ensemblv77, EnsemblGeneID_from_ensemblv77 fifth; the evidence drops columns 2 and 3 by position,
    so their names here are stand-ins), then one column per sample named by its title, in another order than the
    series matrix."""
    series = _series_matrix(tmp_path)
    order = [2, 0, 3, 1]
    annotation = ["Probe.Set.Name", "Chromosome", "Description", "HGNC_symbol_from_ensemblv77"]
    rows = [
        [*annotation, "EnsemblGeneID_from_ensemblv77", *[TITLES[i] for i in order]],
        ["ENSG00000141510_at", "17", "tumor protein p53", "TP53", "ENSG00000141510", 5.5, 6.5, 7.5, 8.5],
        ["ENSG00000164458_at", "6", "T-box transcription factor T", "TBXT", "ENSG00000164458", 1.0, 2.0, 3.0, 4.0],
        ["ENSG00000168036_at", "3", "catenin beta 1", "CTNNB1", "ENSG00000168036", 9.25, 9.5, 9.75, 10.0],
    ]
    matrix = _write(tmp_path / "GSE85217_M_exp_763_MB_SubtypeStudy_TaylorLab.txt.gz", _tsv(rows), gz=True)
    adata = _read(
        path=str(matrix), labels=str(series), format="geo", label_key="subgroup", group_key="gender", scale="normalized"
    )
    assert list(adata.obs_names) == [TITLES[i] for i in order]
    assert list(adata.obs["label"]) == [SUBGROUPS[i] for i in order]
    assert list(adata.obs["geo_accession"]) == [GSM[i] for i in order]
    assert list(adata.var["symbol"]) == ["TP53", "TBXT", "CTNNB1"]  # not the description before it
    assert adata[TITLES[0], "ENSG00000168036_at"].X[0, 0] == 9.5  # TITLES[0] is the second sample column


def test_geo_series_matrix_without_the_label_field(tmp_path):
    series = _series_matrix(tmp_path, np.ones((3, 4)), subgroup=False)
    message = _error(series, path=str(series), format="geo", label_key="subgroup")
    assert "'subgroup' is not a characteristic" in message and "subtype" in message


def test_geo_series_matrix_without_a_table_asks_for_the_supplementary_file(tmp_path):
    series = _series_matrix(tmp_path)
    assert "supplementary" in _error(series, path=str(series), format="geo", label_key="subgroup")


def test_geo_supplementary_matrix_of_another_series(tmp_path):
    series = _series_matrix(tmp_path)
    matrix = _write(tmp_path / "other.txt", _tsv([["ID", "MB_X_1", "MB_X_2"], ["ENSG1", 1, 2]]))
    message = _error(matrix, path=str(matrix), labels=str(series), format="geo", label_key="subgroup")
    assert "names a sample" in message


# ------------------------------------------------------------------------------------------------ GDC STAR counts

STAR_HEADER = [
    "gene_id",
    "gene_name",
    "gene_type",
    "unstranded",
    "stranded_first",
    "stranded_second",
    "tpm_unstranded",
    "fpkm_unstranded",
    "fpkm_uq_unstranded",
]
STAR_GENES = [
    ("ENSG00000000003.15", "TSPAN6", "protein_coding"),
    ("ENSG00000002586.20", "CD99", "protein_coding"),
    ("ENSG00000002586.20_PAR_Y", "CD99", "protein_coding"),
    ("ENSG00000228253.1", "MT-ATP8", "protein_coding"),
]
FILE_IDS = [
    "6b1b0e8a-7c3e-4c3f-9b8a-5f7f1b7b0c01",
    "0f5d9e2c-1a2b-4c3d-8e9f-0a1b2c3d4e02",
    "a3c4d5e6-f708-4192-a3b4-c5d6e7f8a903",
    "c1d2e3f4-a5b6-4c7d-8e9f-a0b1c2d3e404",
]
#: a STAR counts file's name starts with a UUID of its own, not its File ID (GDC sample sheets and manifests show both)
FILE_NAMES = [
    f"{u}.rna_seq.augmented_star_gene_counts.tsv"
    for u in (
        "d6a8c0e4-2f1b-4e5d-9c3a-7b8e9f0a1b11",
        "5e7f9a1b-3c2d-4e6f-8a0b-1c2d3e4f5a12",
        "9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c13",
        "3f2e1d0c-9b8a-4f7e-8d6c-5b4a3f2e1d14",
    )
]
#: the last: a normal (sample type 11) of the first sample's patient, under the same Project ID in the cart
SAMPLE_IDS = ["TCGA-06-0125-01A", "TCGA-02-0047-01A", "TCGA-A1-A0SB-01A", "TCGA-06-0125-11A"]


def _star_file(folder: Path, file_id: str, name: str, counts: list[int]) -> Path:
    rows = [["# gene-model: GENCODE v36"], STAR_HEADER]
    rows += [
        [name, "", "", 1_000_000 + i, 500_000, 500_000, "", "", ""]
        for i, name in enumerate(("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"))
    ]
    rows += [
        [g, s, t, c, c // 2, c - c // 2, round(c * 0.731, 4), round(c * 0.2, 4), round(c * 0.25, 4)]
        for (g, s, t), c in zip(STAR_GENES, counts, strict=False)
    ]
    return _write(folder / file_id / name, _tsv(rows))


def _gdc(tmp_path, with_files=(0, 1, 2, 3)):
    download = tmp_path / "gdc_download"
    counts = [[10, 0, 0, 3], [20, 5, 1, 7], [30, 9, 0, 11], [40, 2, 2, 2]]
    for i in with_files:
        _star_file(download, FILE_IDS[i], FILE_NAMES[i], counts[i])
    header = [
        "File ID",
        "File Name",
        "Data Category",
        "Data Type",
        "Project ID",
        "Case ID",
        "Sample ID",
        "Tissue Type",
        "Tumor Descriptor",
        "Specimen Type",
        "Preservation Method",
    ]
    rows = [header] + [
        [
            f,
            n,
            "Transcriptome Profiling",
            "Gene Expression Quantification",
            p,
            s[:12],
            s,
            "Normal" if s.endswith("11A") else "Tumor",
            "Not Applicable" if s.endswith("11A") else "Primary",
            "Solid Tissue",
            "Unknown",
        ]
        for f, n, s, p in zip(
            FILE_IDS, FILE_NAMES, SAMPLE_IDS, ["TCGA-GBM", "TCGA-GBM", "TCGA-BRCA", "TCGA-GBM"], strict=True
        )
    ]
    sheet = _write(tmp_path / "gdc_sample_sheet.2026-12-03.tsv", _tsv(rows))
    return dict(path=str(sheet), files_dir=str(download), format="gdc", label_key="Project ID", group_key="Case ID")


def test_gdc_star_counts_with_the_sample_sheet(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="stages.preprocess"):
        adata = _read(**_gdc(tmp_path))
    assert list(adata.obs_names) == SAMPLE_IDS[:3]  # the normal is left out, not called TCGA-GBM
    assert "1 samples of sample types other than 01, 03 left out (11: 1)" in caplog.text
    assert list(adata.obs["label"]) == ["TCGA-GBM", "TCGA-GBM", "TCGA-BRCA"]
    assert list(adata.obs["group"]) == [s[:12] for s in SAMPLE_IDS[:3]]
    assert list(adata.var_names) == [g for g, _, _ in STAR_GENES]  # the N_ summary rows are not genes
    assert list(adata.var["symbol"]) == ["TSPAN6", "CD99", "CD99", "MT-ATP8"]
    assert adata.X[1, 3] == 7 and adata.X[2, 1] == 9
    tpm = _read(**_gdc(tmp_path), counts_column="tpm_unstranded", scale="normalized")
    assert tpm.X[2, 0] == pytest.approx(30 * 0.731)


def test_gdc_files_not_downloaded_are_left_out_and_none_is_an_error(tmp_path):
    adata = _read(**_gdc(tmp_path, with_files=(0, 2)))
    assert list(adata.obs_names) == [SAMPLE_IDS[0], SAMPLE_IDS[2]]
    cfg = _gdc(tmp_path / "empty", with_files=())
    (tmp_path / "empty" / "gdc_download").mkdir(parents=True)
    assert "gdc-client download" in _error(cfg["files_dir"], **cfg)


# ------------------------------------------------------------------------------------------------ TCGA pan-cancer


def test_tcga_pancan_matrix_with_na_genes(tmp_path):
    """EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv: gene_id SYMBOL|Entrez, aliquot barcodes, NA."""
    barcodes = ["TCGA-OR-A5J1-01A-11R-A29S-07", "TCGA-02-0047-01A-01R-1849-01", "TCGA-06-0125-01A-01R-1849-01"]
    rows = [
        ["gene_id", *barcodes],
        ["?|100130426", 0, 0, 0.9066],
        ["SLC35E2|728661", "NA", 12.3, 10.1],
        ["SLC35E2|9906", 1.5, 2.5, 3.5],
        ["TP53|7157", 100.25, 200.5, 300.75],
    ]
    matrix = _write(tmp_path / "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv", _tsv(rows))
    labels = _write(
        tmp_path / "types.tsv",
        _tsv([["sample", "type"], ["TCGA-OR-A5J1-01", "ACC"], ["TCGA-02-0047-01", "GBM"], ["TCGA-06-0125-01", "GBM"]]),
    )
    cfg = dict(path=str(matrix), labels=str(labels), format="tcga", label_key="type", scale="normalized")
    assert "missing: drop_genes" in _error(matrix, **cfg)
    adata = _read(**cfg, missing="drop_genes")
    assert list(adata.var_names) == ["?|100130426", "SLC35E2|9906", "TP53|7157"]
    assert list(adata.var["symbol"]) == ["?", "SLC35E2", "TP53"]
    assert list(adata.obs["label"]) == ["ACC", "GBM", "GBM"] and adata.X[2, 2] == pytest.approx(300.75)


def test_tcga_normal_and_metastatic_aliquots_are_left_out_by_sample_type(tmp_path, caplog):
    """The PanCanAtlas matrix holds normal-tissue aliquots (sample types 10-19) beside the tumours, and TCGA-CDR keys
    its cancer type by patient (bcr_patient_barcode, 12 characters): a normal must not take its patient's tumour type.
    Kept by default: 01 (primary solid tumour) and 03 (primary blood-derived cancer)."""
    import logging

    barcodes = [
        "TCGA-02-0047-01A-01R-1849-01",  # GBM primary tumour
        "TCGA-06-0125-11A-01R-1849-01",  # its patient's normal tissue
        "TCGA-AB-2803-03A-01T-0734-13",  # LAML, primary blood-derived cancer
        "TCGA-EE-A2GJ-06A-11R-A18T-07",  # SKCM metastasis
        "TCGA-06-0125-01A-01R-1849-01",  # GBM primary tumour
    ]
    rows = [["gene_id", *barcodes], ["TP53|7157", 1.5, 2.5, 3.5, 4.5, 5.5], ["EGFR|1956", 9.0, 8.0, 7.0, 6.0, 5.0]]
    matrix = _write(tmp_path / "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv", _tsv(rows))
    cdr = [["bcr_patient_barcode", "type"]]
    cdr += [["TCGA-02-0047", "GBM"], ["TCGA-06-0125", "GBM"], ["TCGA-AB-2803", "LAML"], ["TCGA-EE-A2GJ", "SKCM"]]
    labels = _write(tmp_path / "cdr.tsv", _tsv(cdr))
    cfg = dict(path=str(matrix), labels=str(labels), format="tcga", label_key="type", scale="normalized")
    with caplog.at_level(logging.INFO, logger="stages.preprocess"):
        adata = _read(**cfg)
    assert list(adata.obs_names) == [barcodes[0], barcodes[2], barcodes[4]]
    assert list(adata.obs["label"]) == ["GBM", "LAML", "GBM"] and adata.X[2, 1] == 5.0
    assert "2 samples of sample types other than 01, 03 left out (06: 1, 11: 1)" in caplog.text
    with_metastases = _read(**cfg, sample_types=["01", "03", "06"])
    assert list(with_metastases.obs["label"]) == ["GBM", "LAML", "SKCM", "GBM"]
    message = _error(matrix, **cfg, sample_types=["02"])
    assert "set expression.sample_types" in message and "5 samples of other types" in message


# ------------------------------------------------------------------------------------------------ GBM Smart-seq2


SS2_CELLS = ["MGH101-P1-A04", "MGH101-P1-A05", "MGH102-P1-B03", "BT771-P1-C11"]


def _ss2_matrix(tmp_path, name="GSM3828672_Smartseq2_GBM_IDHwt_processed_TPM.tsv.gz") -> Path:
    """GSM3828672 as GEO serves it (the same bytes as the Single Cell Portal's IDHwtGBM.processed.SS2.logTPM.txt):
    genes x cells, tab separated, first column GENE, values log2(TPM/10+1)."""
    tpm = np.array([[0, 14.0, 0, 90.0], [680.0, 590.0, 0, 1270.0], [2550.0, 0, 5490.0, 150.0]])
    values = np.round(np.log2(tpm / 10 + 1), 6)
    rows = [["GENE", *SS2_CELLS], *([g, *v] for g, v in zip(["A1BG", "SOX2", "EGFR"], values.tolist(), strict=True))]
    return _write(tmp_path / name, _tsv(rows), gz=name.endswith(".gz"))


def test_smartseq2_matrix_with_single_cell_portal_metadata(tmp_path):
    """The Single Cell Portal's IDHwt.GBM.Metadata.SS2.txt: NAME, Sample (the tumour), GBMType, CellAssignment, ...,
    then the TYPE row; no 'tumour name' column. The matrix is log2(TPM/10+1) (scale: log2_tpm10)."""
    matrix = _ss2_matrix(tmp_path)
    meta = _write(
        tmp_path / "IDHwt.GBM.Metadata.SS2.txt",
        _tsv(
            [
                ["NAME", "Sample", "GBMType", "CellAssignment", "MESlike2", "MESlike1", "AClike", "OPClike"],
                ["TYPE", "group", "group", "group", "numeric", "numeric", "numeric", "numeric"],
                [SS2_CELLS[0], "MGH101", "Adult", "Malignant", 0.1, -0.2, 0.3, -0.1],
                [SS2_CELLS[1], "MGH101", "Adult", "Malignant", 0.2, 0.1, -0.4, 0.0],
                [SS2_CELLS[2], "MGH102", "Adult", "Macrophage", "NA", "NA", "NA", "NA"],
                [SS2_CELLS[3], "BT771", "Pediatric", "Malignant", -0.3, 0.2, 0.1, 0.5],
            ]
        ),
    )
    adata = _read(path=str(matrix), labels=str(meta), format="tsv", label_key="Sample", scale="log2_tpm10")
    assert list(adata.obs_names) == SS2_CELLS and list(adata.var_names) == ["A1BG", "SOX2", "EGFR"]
    assert list(adata.obs["label"]) == ["MGH101", "MGH101", "MGH102", "BT771"]
    assert adata.X[2, 2] == pytest.approx(np.log2(550)) and adata.X[3, 0] == pytest.approx(np.log2(10))
    message = _error(meta, path=str(matrix), labels=str(meta), format="tsv", label_key="tumour name")
    assert "'tumour name' is not a column" in message and "Sample" in message


def _geo_cell_workbook(path: Path, cells: dict[str, tuple[str, str, str]]) -> Path:
    """GSE131928_single_cells_tumor_name_and_adult_or_peidatric.xlsx as GEO serves it: 43 rows of notes before the
    header (Sample name, tumour name, adult/pediatric, processed data file), then every cell of both platforms."""
    import pandas as pd

    notes = [["Single cell RNA-seq of adult and paediatric IDH-wildtype glioblastomas"], []] + [
        [f"note {i}: processed data are log2(TPM/10+1)"] for i in range(41)
    ]
    header = [["Sample name", "tumour name", "adult/pediatric", "processed data file"]]
    rows = [[cell, *values] for cell, values in cells.items()]
    pd.DataFrame(notes + header + rows).to_excel(path, header=False, index=False)
    return path


def test_smartseq2_cells_as_geo_serves_them_in_its_workbook(tmp_path):
    """GEO's workbook: the header is the 44th row (found as the row naming label_key); 10X cells, which the
    Smart-seq2 matrix does not hold, are left out of the join."""
    ss2 = "GSM3828672_Smartseq2_GBM_IDHwt_processed_TPM.tsv"
    tenx = "GSM3828673_10X_GBM_IDHwt_processed_TPM.tsv"
    cells = {
        SS2_CELLS[0]: ("MGH101", "adult", ss2),
        SS2_CELLS[1]: ("MGH101", "adult", ss2),
        SS2_CELLS[2]: ("MGH102", "adult", ss2),
        SS2_CELLS[3]: ("BT771", "pediatric", ss2),
        "MGH105A_AAACCTGAGCTCCCAG": ("MGH105", "adult", tenx),
        "MGH105A_AAACCTGCAATGAAAC": ("MGH105", "adult", tenx),
    }
    book = _geo_cell_workbook(tmp_path / "GSE131928_single_cells_tumor_name_and_adult_or_peidatric.xlsx", cells)
    matrix = _ss2_matrix(tmp_path)
    adata = _read(
        path=str(matrix),
        labels=str(book),
        format="tsv",
        label_key="tumour name",
        group_key="adult/pediatric",
        scale="log2_tpm10",
    )
    assert list(adata.obs_names) == SS2_CELLS and list(adata.obs["label"]) == ["MGH101", "MGH101", "MGH102", "BT771"]
    assert list(adata.obs["group"]) == ["adult", "adult", "adult", "pediatric"]
    broken = _write(tmp_path / "broken.xlsx", "")
    broken.write_bytes(book.read_bytes()[:200])
    assert "xlsx" in _error(broken, path=str(matrix), labels=str(broken), format="tsv", label_key="tumour name")


# ------------------------------------------------------------------------------------------------ the stage


def test_bad_input_stops_the_stage_with_exit_2_and_writes_nothing(tmp_path):
    series = _series_matrix(tmp_path, np.ones((3, 4)), subgroup=False)
    config = tmp_path / "geo.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "bad_geo",
                "stages": ["preprocess"],
                "expression": {"path": str(series), "format": "geo", "label_key": "subgroup", "scale": "normalized"},
            }
        )
    )
    outputs = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "stages.preprocess", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "ONCOXAI_OUTPUTS": str(outputs)},
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(series) in errors[0] and "subgroup" in errors[0]
    assert not outputs.exists() or not any(p.is_file() for p in outputs.rglob("*"))


# ------------------------------------------------------------------------------------------------ end to end


def _make_all(raw: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Write the config ``raw`` (a shipped config pointed at a fixture and made small), run ``make all`` on it with
    the local runner; -> (the finished process, the experiment's output folder). Fails the test on a non-zero exit."""
    config = tmp_path / f"{raw['name']}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "all", f"CONFIG={config}", "RUNNER=local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, tmp_path / "outputs" / raw["name"]


@pytest.mark.slow
def test_gtex_layout_fixture_through_make_all(tmp_path):
    """configs/gtex.yaml, pointed at a GTEx-layout fixture of five tissues (per-tissue GCT files with the id column,
    the attribute table with extra samples and empty fields, the phenotype table) and made small, runs through
    make all: tissues become classes, a donor's samples never straddle the split, the model learns the tissues and
    the report is written."""
    import json

    import pandas as pd

    from fixtures.synthetic import GTEX_REFERENCE, GTEX_TISSUES, write_gtex
    from stages.preprocess.formats.gtex import gtex_tissue_name

    gcts, attributes, phenotypes, markers = write_gtex(tmp_path / "gtex-v8")
    raw = yaml.safe_load((REPO / "configs" / "gtex.yaml").read_text())
    raw["expression"].update(
        path=str(gcts[0]), more_paths=[str(p) for p in gcts[1:]], labels=str(attributes), phenotypes=str(phenotypes)
    )
    raw["preprocess"].update(n_genes=100, height=10, width=10, augmentation={"method": "gtex_noise", "min_samples": 60})
    raw["train_torch"].update(folds=2, epochs=6, patience=6, baselines=["logistic_regression"])
    raw["explain"] = {
        "methods": ["saliency", "integrated_gradients"],
        "markers": str(markers),
        "top_k": 10,
        "integrated_gradients": {"steps": 8},
        "faithfulness": {"max_samples": 16, "steps": 5},
        "sanity": {"max_samples": 8},
        "stability": {"max_samples": 16},
    }
    raw.pop("variants")
    _, exp = _make_all(raw, tmp_path)
    samples = pd.read_csv(exp / "preprocess" / "samples.csv")
    real = samples[samples["augmented_from"].isna()]
    assert sorted(real["label"].unique()) == sorted(gtex_tissue_name(t) for t in (*GTEX_TISSUES, GTEX_REFERENCE))
    assert len(real) == 360 and real["group"].str.match(r"^GTEX-[0-9A-F]+$").all()
    sides = real.groupby("group")["split"].nunique()
    assert (sides == 1).all(), "a donor's samples are on both sides of the split"
    assert (samples.loc[samples["augmented_from"].notna(), "split"] == "train").all()
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert summary["models"]["resnet18"]["macro_f1"] >= 0.8, summary["models"]
    assert (exp / "report" / "index.html").is_file()
    # the shipped config's covariates, read as GTEx publishes them, reach the shortcut audit: the collection site and
    # RIN from the sample attributes, sex and age from the subject phenotypes through the donor, and the library size
    audit = summary["shortcuts"]["resnet18"]
    assert audit["nuisances"] == {
        "group": "categorical",
        "SMCENTER": "categorical",
        "SMRIN": "continuous",
        "SEX": "categorical",
        "AGE": "categorical",
        "total_counts": "continuous",
        "n_genes_by_counts": "categorical"
        if audit["nuisances"]["n_genes_by_counts"] == "categorical"
        else "continuous",
    }
    assert not audit["flagged"], audit["flagged"]  # the fixture's nuisances are drawn apart from the tissues


def _published(dataset: str, root: Path) -> tuple[dict, dict]:
    """The fixture of ``dataset`` in its published layout (fixtures/public.py) -> (expression keys pointing the
    shipped config at it, what the test checks)."""
    from fixtures import public

    if dataset == "gse85217":
        f = public.write_gse85217(root)
        return {"path": str(f["matrix"]), "labels": str(f["series"])}, {**f, "left_out": 0}
    if dataset == "gbm-smartseq2":
        f = public.write_gbm_smartseq2(root)
        return {"path": str(f["matrix"]), "labels": str(f["workbook"])}, {**f, "left_out": f["n_10x"]}
    f = public.write_tcga_pancan(root)
    return {"path": str(f["matrix"]), "labels": str(f["cdr"])}, {**f, "left_out": len(f["normals"])}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["gse85217", "gbm-smartseq2", "tcga"])
def test_shipped_config_runs_through_make_all_on_its_published_layout(dataset, tmp_path):
    """configs/<dataset>.yaml, pointed at a fixture in the layout the source publishes (fixtures/public.py) and made
    small, runs through make all: the classes come from the source's own label field, what the source holds beside
    the data is left out and counted (GEO's 10X cells, TCGA's normal aliquots), the model learns the classes, and
    the markers, written in gene symbols, are found through the data's symbols. (train_tf_gradcam, in tcga.yaml's
    stages, runs in the TCGA demo's tests instead: here its time would buy nothing the demo does not check.)"""
    import json

    import pandas as pd

    expression, fixture = _published(dataset, tmp_path / "data")
    raw = yaml.safe_load((REPO / "configs" / f"{dataset}.yaml").read_text())
    raw.pop("variants")
    raw["stages"] = [s for s in raw["stages"] if s != "train_tf_gradcam"]
    raw.pop("train_tf_gradcam", None)
    raw["expression"].update(expression)
    raw["preprocess"].update(n_genes=100, height=10, width=10, deepinsight={"embedding": "pca"})
    raw["preprocess"].pop("gene_grid", None)
    raw["preprocess"]["transform"] = "deepinsight"
    raw["train_torch"].update(models=["resnet18"], folds=2, epochs=10, patience=10, baselines=["logistic_regression"])
    off = {"enabled": False}
    raw["explain"] = {
        "methods": ["saliency"],
        "markers": str(fixture["markers"]),
        "top_k": 10,
        "precision_k": 8,
        "faithfulness": off,
        "sanity": off,
        "stability": off,
        "biology": off,
    }
    proc, exp = _make_all(raw, tmp_path)
    samples = pd.read_csv(exp / "preprocess" / "samples.csv")
    assert sorted(samples["label"].unique()) == fixture["classes"]
    if fixture["left_out"]:
        assert f"{fixture['left_out']} of" in proc.stderr or f"{fixture['left_out']} samples" in proc.stderr
    if dataset == "tcga":
        assert not set(samples["sample"]) & set(fixture["normals"]), "a normal aliquot took its patient's type"
        assert "sample types other than 01, 03 left out (11: 24)" in proc.stderr
    summary = json.loads((exp / "report" / "summary.json").read_text())
    models = summary["models"]  # labels on the right samples: the baseline learns them; the CNN ranks them well
    assert models["logistic_regression"]["macro_f1"] >= 0.8 and models["resnet18"]["macro_auc"] >= 0.8, models
    # the symbols matched (else explain stops: none of its genes is a gene of the data), and saliency ranks the
    # planted markers above chance: 8 markers of each class among 100 genes, 0.08 at random
    precision = summary["explanations"]["resnet18/saliency"]["marker_precision_at_8"]
    assert precision >= 0.16, summary["explanations"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["ucsf-pdgm", "brats2021"])
def test_shipped_mri_config_runs_through_make_all_on_its_published_layout(dataset, tmp_path):
    """configs/ucsf-pdgm.yaml and configs/brats2021.yaml, pointed at cohorts in the layouts the releases publish
    (fixtures/mri.py: UCSF-PDGM v5's exam folders with each sequence as acquired and bias-corrected, ADC and DWI
    beside them, follow-up exams under their baseline's number; BraTS 2021 case folders beside the RSNA-MICCAI MGMT
    table, labelled through UCSF-PDGM's BraTS21 ID) and made small, run through make all. UCSF-PDGM runs with every
    exam (mri.exams: all): follow-ups are read and trained on, always on their patient's side of the held-out split.
    BraTS runs as shipped: a case is labelled by the row naming it, and the cases and rows the join cannot use are
    left out and counted."""
    import json

    import pandas as pd

    from fixtures.mri import write_mri
    from stages.train_3d_mri.cohort import FOLLOW_UP, NO_BRATS_ID

    root = tmp_path / "data" / dataset
    layout = "ucsf-pdgm" if dataset == "ucsf-pdgm" else "brats"
    table = write_mri(
        root, layout=layout, n_patients=20, mutant_fraction=0.45, follow_ups=3 if layout == "ucsf-pdgm" else 1,
        shape=(28, 32, 24), seed=11, release_files=True,
    )  # fmt: skip
    raw = yaml.safe_load((REPO / "configs" / f"{dataset}.yaml").read_text())
    raw.pop("variants", None)
    raw["device"] = "cpu"
    raw["mri"].update(root=str(root), metadata=str(table))
    if layout == "ucsf-pdgm":
        raw["mri"]["exams"] = "all"
    raw["train_3d_mri"].update(size=[32, 32, 32], folds=2, epochs=2, batch_size=8, augment={"elastic": 0.0})
    proc, exp = _make_all(raw, tmp_path)
    cohort = pd.read_csv(exp / "train_3d_mri" / "cohort.csv", dtype=str, keep_default_na=False)
    used = cohort[cohort["status"] == "included"]
    assert {"missing T1c", "no IDH value"} <= set(cohort["status"]), cohort["status"].value_counts()
    assert (used.groupby("patient")["split"].nunique() == 1).all(), "a patient's exams on both sides of the split"
    meta = pd.read_csv(table, dtype=str, keep_default_na=False)
    if layout == "ucsf-pdgm":
        follow_ups = used[used["follow_up_of"] != ""]
        assert len(follow_ups) == 3 and (follow_ups["exam"].str.split("_").str[0] == follow_ups["follow_up_of"]).all()
        assert (follow_ups["patient"] == follow_ups["follow_up_of"]).all()
        ids = meta["ID"].str.replace(r"^UCSF-PDGM-(\d+)", lambda m: f"UCSF-PDGM-{int(m[1]):04d}", regex=True)
        truth = dict(zip(ids, meta["IDH"], strict=True))
    else:
        counts = cohort["status"].value_counts()
        assert counts[NO_BRATS_ID] == 2 and counts["no metadata row"] == 2 and counts[FOLLOW_UP] == 1, counts
        assert (
            used["exam"].str.match(r"^BraTS2021_\d{5}$").all() and used["patient"].str.match(r"^UCSF-PDGM-\d{4}$").all()
        )
        truth = dict(zip(meta["BraTS21 ID"], meta["IDH"], strict=True))  # the join: the row naming the case
    assert len(used) >= 14
    for exam, value in zip(used["exam"], used["idh_value"], strict=True):
        assert value == truth[exam], f"{exam} labelled by another row's IDH"
    summary = json.loads((exp / "report" / "summary.json").read_text())
    assert summary["models"]["efficientnet-b0"]["kind"] == "deep"
    assert (exp / "report" / "index.html").is_file()
