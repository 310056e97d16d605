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

from .textfiles import compression, head, reading

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
