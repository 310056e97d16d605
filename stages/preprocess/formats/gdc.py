"""GDC (NCI Genomic Data Commons) RNA-seq downloads: one STAR gene-counts file per sample plus the cart's sample
sheet, as the GDC portal and gdc-client write them.

- ``<uuid>.rna_seq.augmented_star_gene_counts.tsv`` (GDC data release 32 on, "STAR - Counts" workflow; the UUID
  that starts the name is not the File ID, so files are found by the sample sheet's File Name): a comment
  line ``# gene-model: GENCODE v36``, a header ``gene_id gene_name gene_type unstranded stranded_first
  stranded_second tpm_unstranded fpkm_unstranded fpkm_uq_unstranded`` (tab separated), four STAR summary rows
  (``N_unmapped``, ``N_multimapping``, ``N_noFeature``, ``N_ambiguous``: counts only, the other cells empty), then
  one row per GENCODE gene (ids with version; the PAR copies on chrY end in ``_PAR_Y``; symbols repeat).
- gdc-client and the portal's cart archive put each file in a folder named by its file id:
  ``<download>/<file id>/<file name>``; a flat folder of files is accepted too.
- The sample sheet (``gdc_sample_sheet.<date>.tsv``, from the cart): one row per file with ``File ID``,
  ``File Name``, ``Data Category``, ``Data Type``, ``Project ID`` (e.g. TCGA-GBM), ``Case ID``, ``Sample ID`` and the
  sample's type columns (``Sample Type`` in older sheets; ``Tissue Type``, ``Tumor Descriptor``... in newer ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

from ..params import Expression
from ..textfiles import compression, head, reading
from .gtex import align_genes
from .tables import assemble, check_unique, check_values, read_labels
from .tcga import log_other_types, tcga_sample_type

log = get_logger(__name__)

COUNTS_SUFFIX = ".rna_seq.augmented_star_gene_counts.tsv"
SUMMARY_ROWS = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
VALUE_COLUMNS = (
    "unstranded",
    "stranded_first",
    "stranded_second",
    "tpm_unstranded",
    "fpkm_unstranded",
    "fpkm_uq_unstranded",
)


def find_count_files(folder: Path, names: list[str], ids: list[str] | None) -> dict[str, Path]:
    """Sample-sheet file name -> its path under ``folder`` (``<file id>/<name>``, else ``<name>``, else anywhere
    below); names with no file are left out."""
    found: dict[str, Path] = {}
    anywhere = None
    for i, name in enumerate(names):
        candidates = ([folder / ids[i] / name] if ids else []) + [folder / name]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            if anywhere is None:
                anywhere = {p.name: p for p in folder.rglob(f"*{COUNTS_SUFFIX}*")}
            hit = anywhere.get(name)
        if hit is not None:
            found[name] = hit
    return found


def read_star_counts(path: Path, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One STAR counts file -> (gene ids, gene names, values of ``column`` float32), summary rows dropped."""
    lines = head(path, 50)
    skip = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    header = lines[skip].split("\t") if skip < len(lines) else []
    if header[:2] != ["gene_id", "gene_name"] or column not in header:
        raise UserError(
            f"{path}: not a GDC STAR gene-counts file with a '{column}' column (header: {header[:9]}); "
            f"expression.counts_column is one of {list(VALUE_COLUMNS)}"
        )
    with reading(path, "the STAR counts file"):
        frame = pd.read_csv(
            path,
            sep="\t",
            skiprows=skip,
            usecols=["gene_id", "gene_name", column],
            dtype={"gene_id": str, "gene_name": str, column: np.float32},
            compression=compression(path),
            keep_default_na=False,
            na_values=[""],
        )
    frame = frame[~frame["gene_id"].isin(SUMMARY_ROWS)]
    if frame.empty:
        raise UserError(f"{path}: no gene rows after the header; is the file complete? Download it again")
    return frame["gene_id"].to_numpy(), frame["gene_name"].fillna("").to_numpy(), frame[column].to_numpy()


def read(expression: Expression):
    """GDC STAR gene-counts files (one per sample, under ``files_dir``) listed by the cart's sample sheet
    (``path``) -> AnnData samples x genes; obs the sheet's columns, obs_names its Sample ID (or the file name when
    a sample has several files); var_names the GENCODE ids, ``var['symbol']`` the gene names."""
    if expression.files_dir is None:
        raise UserError(
            f"{expression.path}: expression.files_dir is required with format gdc: the folder the STAR counts "
            "files were downloaded into (gdc-client download -d <folder>)"
        )
    sheet = read_labels(
        expression,
        path=expression.path,
        sample_column=expression.sample_column or "File Name",
        extra=("File ID", "Sample ID"),
    )
    if "Sample ID" in sheet:  # a TCGA cart holds normals beside the tumours, under the same Project ID
        other = sheet["Sample ID"].astype(str).map(tcga_sample_type).isin(set(expression.sample_types) | {None})
        log_other_types(expression.path, list(sheet.loc[~other, "Sample ID"].astype(str)), expression.sample_types)
        if not other.any():
            raise UserError(
                f"{expression.path}: every sample of the sheet is of a sample type other than "
                f"{', '.join(expression.sample_types)} (e.g. {sheet['Sample ID'].iloc[0]}); set expression.sample_types"
            )
        sheet = sheet[other]
    folder = Path(expression.files_dir)
    ids = sheet["File ID"].tolist() if "File ID" in sheet else None
    found = find_count_files(folder, list(sheet.index), ids)
    if not found:
        example = f"{ids[0]}/{sheet.index[0]}" if ids else sheet.index[0]
        raise UserError(
            f"{folder}: none of the {len(sheet)} files of {expression.path} is there (e.g. {example}); download "
            "them into this folder (gdc-client download -m <manifest> -d <folder>) or fix files_dir"
        )
    if len(found) < len(sheet):
        log.info(
            "%s: %d of %d files of the sample sheet are not in %s; left out",
            expression.path,
            len(sheet) - len(found),
            len(sheet),
            folder,
        )
    names = list(found)
    genes = symbols = X = None
    for i, name in enumerate(names):
        file_genes, file_symbols, values = read_star_counts(found[name], expression.counts_column)
        if genes is None:
            genes, symbols = file_genes, file_symbols
            check_unique(genes, "gene ids (gene_id column)", found[name])
            X = np.empty((len(names), len(genes)), dtype=np.float32)
        elif not np.array_equal(file_genes, genes):
            values = align_genes(values[:, None], pd.Index(file_genes), pd.Index(genes), found[name], found[names[0]])[
                :, 0
            ]
        X[i] = values
        if (i + 1) % 500 == 0:
            log.info("%s: %d of %d files read", folder, i + 1, len(names))
    check_values(X, names, list(genes), folder, expression.negatives_ok, missing_ok=expression.missing == "drop_genes")
    obs = sheet.loc[names].copy()
    sample_ids = obs["Sample ID"] if "Sample ID" in obs else None
    if sample_ids is not None and sample_ids.notna().all() and sample_ids.is_unique:
        obs.index = pd.Index(sample_ids.astype(str), dtype=object)
    else:
        log.info("%s: a sample has several files (or no Sample ID); samples are named by file", expression.path)
        obs.index = pd.Index(names, dtype=object)
    obs.index.name = None
    return assemble(X, obs, pd.DataFrame({"symbol": symbols}, index=pd.Index(genes, dtype=object)))
