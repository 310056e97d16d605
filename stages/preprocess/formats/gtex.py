"""GTEx v8 GCT 1.2 matrices (all tissues, or one file per tissue) with the sample attributes (SMTSD) and the subject
phenotypes. Layout: the GTEx portal's data dictionaries and downloads page; the 54 tissues' RNA-seq sample counts
(17,382) from the portal's tissue summary as saved in Sun-lab/gtex_AnVIL (data/GTEx_Portal.csv)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from shared.errors import UserError

from ..params import Expression
from ..textfiles import head
from .tables import MatrixFile, assemble, check_unique, join_labels, log_left_out, read_labels, read_matrix


def gtex_tissue_name(tissue: str) -> str:
    """A GTEx tissue (SMTSD) -> the GTEx prior art's class name, e.g. 'Brain - Caudate (basal ganglia)' ->
    'brain_caudate_basal_ganglia'.

    The prior art named its 54 classes after the tissue part of the GTEx v8 file names
    (gene_reads_2017-06-05_v8_<tissue>.gct.gz): lower case; ' - ', spaces and parentheses become single
    underscores; no trailing underscore; hyphens inside words stay ('Cells - EBV-transformed lymphocytes' ->
    'cells_ebv-transformed_lymphocytes', 'Brain - Spinal cord (cervical c-1)' -> 'brain_spinal_cord_cervical_c-1').
    """
    name = re.sub(r"\s+-\s+", "_", tissue.strip().lower())
    name = re.sub(r"[\s()]+", "_", name)
    return re.sub(r"_+", "_", name).strip("_")


def gtex_donor(sample_id: str) -> str:
    """A GTEx sample id -> its donor: 'GTEX-1117F-0226-SM-5GZZ7' -> 'GTEX-1117F' (the first two fields)."""
    return "-".join(sample_id.split("-")[:2])


def read(expression: Expression):
    """GTEx v8 GCT files (``path`` + ``more_paths``) concatenated by samples -> AnnData samples x genes.

    X float32 (n_samples_total, n_genes); var_names the ``Name`` ids (ENSEMBL with version), ``var['symbol']``
    the ``Description`` column; obs from the sample-attribute table (``labels``).
    """
    labels = read_labels(expression, derive_donor=expression.group_key == "donor")
    known = set(labels.index)
    paths = [expression.path, *expression.more_paths]
    headers = [read_gct_header(p) for p in paths]
    all_samples = concat_ids([h[1] for h in headers], paths)
    samples = [s for s in all_samples if s in known]
    if not samples:
        raise UserError(
            f"{expression.labels}: none of its sample ids (e.g. {labels.index[0] if len(labels) else None!r}) "
            f"names a sample of {expression.path} (e.g. {all_samples[0]!r}); check expression.sample_column "
            "(GTEx: SAMPID) and that the two files belong together"
        )
    if len(samples) < len(all_samples):
        log_left_out(expression.path, len(all_samples) - len(samples), len(all_samples), expression.labels)
    n_genes = headers[0][0]
    X = genes = symbols = None
    start = 0
    for path, (declared, _file_samples, lead) in zip(paths, headers, strict=False):
        table = read_matrix(
            MatrixFile(path, sep="\t", skiprows=2, n_id_columns=2 + lead, first_id=lead, expected_rows=declared),
            expression.negatives_ok,
            missing_ok=expression.missing == "drop_genes",
            keep_column=known.__contains__,
            transpose=True,
        )
        if len(table.row_ids) != declared:
            raise UserError(
                f"{path}: line 2 declares {declared} genes but the file holds {len(table.row_ids)}; "
                "is the file complete? Download it again"
            )
        values, file_genes = table.values, pd.Index(table.row_ids)
        if genes is None:
            check_unique(file_genes, "gene ids (Name column)", path)
            genes, symbols = file_genes, table.row_info
        elif not file_genes.equals(genes):
            values = align_genes(values, file_genes, genes, path, paths[0])
        if len(paths) == 1:
            X = values.T  # stored samples-first by the reader: no copy
            break
        if X is None:  # several files: filled file by file, so their data are never held twice
            X = np.empty((len(samples), n_genes), dtype=np.float32)
        X[start : start + values.shape[1]] = values.T
        start += values.shape[1]
    obs = join_labels(samples, labels, expression.path, expression.labels)
    return assemble(X, obs, pd.DataFrame({"symbol": symbols}, index=genes))


def read_gct_header(path) -> tuple[int, list[str], int]:
    """The two GCT header lines and the column header -> (declared number of genes, sample ids, number of leading
    columns before Name: 1 for the per-tissue files' `id`, else 0)."""
    lines = head(path, 3)
    if not lines:
        raise UserError(f"{path}: the file is empty; expected a GCT file (#1.2, dimensions, header, one row per gene)")
    if not lines[0].startswith("#1."):
        raise UserError(
            f"{path}: not a GCT file (line 1 is {lines[0][:40]!r}, expected '#1.2'); "
            "use format csv/tsv for plain matrices"
        )
    dims = lines[1].split("\t") if len(lines) > 1 else []
    if len(dims) < 2 or not all(d.strip().isdigit() for d in dims[:2]):
        got = lines[1][:40] if len(lines) > 1 else ""
        raise UserError(
            f"{path}: GCT line 2 should be '<n_genes>\\t<n_samples>', got {got!r}; is this a GTEx GCT file?"
        )
    header = lines[2].split("\t") if len(lines) > 2 else []
    # GTEx v8's per-tissue read-count files (gene_reads_<date>_v8_<tissue>.gct.gz) put a row-number column `id`
    # before Name and Description; the all-tissue matrices do not.
    lead = 1 if [h.lower() for h in header[:3]] == ["id", "name", "description"] else 0
    if [h.lower() for h in header[lead : lead + 2]] != ["name", "description"]:
        raise UserError(
            f"{path}: GCT line 3 should start with 'Name\\tDescription' (or 'id\\tName\\tDescription'), "
            f"got {header[:3]}; is this a GTEx GCT file?"
        )
    n_genes, n_samples = int(dims[0]), int(dims[1])
    if len(header) - 2 - lead != n_samples:
        raise UserError(
            f"{path}: line 2 declares {n_samples} samples but the header names {len(header) - 2 - lead}; "
            "is the file complete? Download it again"
        )
    return n_genes, header[2 + lead :], lead


def concat_ids(per_file: list[list[str]], paths: list) -> list[str]:
    """Sample ids of several files in file order; the same id in two files is an error naming both."""
    seen: dict[str, object] = {}
    for ids, path in zip(per_file, paths, strict=False):
        for sample in ids:
            if sample in seen:
                raise UserError(
                    f"{path}: duplicate sample id {sample!r} (also in {seen[sample]}); "
                    "each sample may appear once across expression.path and more_paths"
                )
            seen[sample] = path
    return list(seen)


def align_genes(values: np.ndarray, genes: pd.Index, reference: pd.Index, path, reference_path) -> np.ndarray:
    """Rows of ``values`` (genes x samples) reordered to ``reference``; a different gene set is an error."""
    check_unique(genes, "gene ids (Name column)", path)
    if len(genes) != len(reference) or not genes.isin(reference).all():
        extra = genes.difference(reference)
        example = extra[0] if len(extra) else reference.difference(genes)[0]
        raise UserError(
            f"{path}: its gene ids differ from those of {reference_path} (e.g. {example!r}); "
            "all GCT files must come from the same GTEx release"
        )
    return values[genes.get_indexer(reference)]
