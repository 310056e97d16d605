"""TCGA matrices (PanCanAtlas EBPlusPlus: genes x aliquots, ``SYMBOL|Entrez`` ids) labelled by patient or aliquot
barcode (TCGA-CDR). Layout: GDC's PanCanAtlas manifest (file ids, md5, sizes); the matrix's ``SYMBOL|Entrez`` ids and
aliquot barcodes (TCGA's barcode documentation for the sample-type field)."""

from __future__ import annotations

import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

from ..params import Expression
from ..textfiles import default_sep
from .tables import (
    MatrixFile,
    assemble,
    join_labels,
    log_left_out,
    matrix_header,
    no_barcode,
    orient,
    read_labels,
    read_matrix,
)

log = get_logger(__name__)


def match_tcga_barcodes(barcodes, label_ids) -> list[str | None]:
    """The labels-table id of each matrix barcode (or None): the barcode itself, else its longest TCGA prefix there.

    TCGA barcodes are fixed-width fields, e.g. TCGA-02-0047-01A-01R-1849-01 = project-TSS-participant (12
    characters: the patient), sample type (15), vial (16), portion (19), analyte (20), plate (25), centre (28). A
    labels table keyed by any of these shorter forms (e.g. TCGA-02-0047-01) matches the longer barcodes of the
    matrix by truncating them at those widths. Ids that do not start with 'TCGA-' must match exactly.
    """
    known = label_ids if isinstance(label_ids, (set, frozenset)) else set(label_ids)
    matched = []
    for barcode in barcodes:
        forms = [barcode]
        if barcode.startswith("TCGA-"):
            forms += [barcode[:n] for n in (25, 20, 19, 16, 15, 12) if len(barcode) > n]
        matched.append(next((f for f in forms if f in known), None))
    return matched


def tcga_sample_type(barcode: str) -> str | None:
    """The sample-type code of a TCGA barcode (characters 14-15: 01 primary solid tumour, 03 primary blood-derived
    cancer, 06 metastatic, 10-19 normals, ...), or None for an id that is not a TCGA sample barcode."""
    return barcode[13:15] if barcode.startswith("TCGA-") and len(barcode) >= 15 else None


def log_other_types(path, left_out, types) -> None:
    """Count the TCGA samples left out by ``expression.sample_types`` by their type, in the log."""
    if left_out:
        by_type = pd.Series([tcga_sample_type(b) for b in left_out]).value_counts().sort_index()
        log.info(
            "%s: %d samples of sample types other than %s left out (%s); keep them with expression.sample_types",
            path,
            len(left_out),
            ", ".join(sorted(types)),
            ", ".join(f"{code}: {n}" for code, n in by_type.items()),
        )


def read(expression: Expression):
    """A TCGA matrix (genes x samples unless ``orientation`` says otherwise) plus the labels table -> AnnData.

    X float32 (n_samples, n_genes); var_names the whole gene ids, ``var['symbol']`` their part before '|'
    ('TP53|7157' -> 'TP53') when the ids have that form; obs_names the matrix barcodes, labelled per
    ``match_tcga_barcodes``.
    """
    labels = read_labels(expression)
    orientation = "genes_x_samples" if expression.orientation == "auto" else expression.orientation
    header, sep = matrix_header(expression.path, None, default_sep(expression.path), 0)
    known = set(labels.index)  # built once: labelled() is called for every column (or row) of the matrix
    types = set(expression.sample_types)
    other_type: set[str] = set()

    def labelled(barcode: str) -> bool:
        if tcga_sample_type(barcode) not in (None, *types):
            other_type.add(barcode)
            return False
        return match_tcga_barcodes([barcode], known)[0] is not None

    # genes x samples: the columns to keep are known from the header, so each barcode is matched once
    kept = {b for b in header[1:] if labelled(b)} if orientation == "genes_x_samples" else None
    if kept is not None and not kept:
        if other_type:
            example = sorted(other_type)[0]
            raise UserError(
                f"{expression.path}: no sample of the kept sample types ({', '.join(sorted(types))}) matches "
                f"{expression.labels}; "
                f"{len(other_type)} samples of other types (e.g. {example!r}, type {example[13:15]}) are left out: "
                "set expression.sample_types"
            )
        raise no_barcode(expression, header[1] if len(header) > 1 else None, labels)
    table = read_matrix(
        MatrixFile(expression.path, sep=sep),
        expression.negatives_ok,
        missing_ok=expression.missing == "drop_genes",
        keep_column=kept.__contains__ if kept is not None else None,
        keep_row=labelled if orientation == "samples_x_genes" else None,
        transpose=orientation == "genes_x_samples",
    )
    X, samples, genes = orient(table, orientation, expression.path)
    log_other_types(expression.path, other_type, types)
    log_left_out(expression.path, table.left_out - len(other_type), len(samples) + table.left_out, expression.labels)
    keys = match_tcga_barcodes(samples, labels.index)
    obs = join_labels(samples, labels, expression.path, expression.labels, keys=keys)
    var = pd.DataFrame(index=pd.Index(genes))
    if any("|" in g for g in genes):
        var["symbol"] = [g.split("|", 1)[0] for g in genes]
    return assemble(X, obs, var)
