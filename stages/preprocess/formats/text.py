"""Plain tables (csv / tsv, plain or gzip): a genes x samples or samples x genes matrix with a header, labels in obs
columns of a second table; the orientation is detected from the ids."""

from __future__ import annotations

import pandas as pd

from ..params import Expression
from .tables import (
    MatrixFile,
    assemble,
    detect_orientation,
    join_labels,
    labelled_only,
    log_left_out,
    matrix_header,
    orient,
    peek_orientation,
    read_labels,
    read_matrix,
)


def read(expression: Expression):
    """csv/tsv: a matrix (samples x genes or genes x samples) plus the labels table -> AnnData samples x genes.

    Only the samples with a row in the labels table are read (the others are logged and left out); with the
    orientation known (set, or clear from the header and the first rows) they are selected as the file streams.
    """
    labels = read_labels(expression)
    known = set(labels.index)
    header, sep = matrix_header(expression.path, None, "," if expression.format == "csv" else "\t", 0)
    orientation = expression.orientation
    if orientation == "auto":
        orientation = peek_orientation(expression.path, header, sep, known)
    keep = (lambda sample: sample in known) if orientation != "auto" else None
    table = read_matrix(
        MatrixFile(expression.path, sep=sep),
        expression.negatives_ok,
        missing_ok=expression.missing == "drop_genes",
        keep_column=keep if orientation == "genes_x_samples" else None,
        keep_row=keep if orientation == "samples_x_genes" else None,
        transpose=orientation == "genes_x_samples",
    )
    if orientation == "auto":
        orientation = detect_orientation(table.row_ids, table.col_ids, labels.index, expression.path, expression.labels)
    X, samples, genes = orient(table, orientation, expression.path)
    log_left_out(expression.path, table.left_out, len(samples) + table.left_out, expression.labels)
    X, samples = labelled_only(
        X, samples, [s if s in known else None for s in samples], expression.path, expression.labels
    )
    obs = join_labels(samples, labels, expression.path, expression.labels)
    return assemble(X, obs, pd.DataFrame(index=pd.Index(genes)))
