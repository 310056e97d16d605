"""GEO series matrix files (``GSE<n>_series_matrix.txt.gz``, or ``GSE<n>-GPL<m>_series_matrix.txt.gz`` when the
series spans platforms), as NCBI GEO serves them.

The layout (GEO's "Series Matrix File" documentation): tab-separated text, gzip as downloaded; ``!Series_*`` lines
describe the series; ``!Sample_*`` lines hold one double-quoted cell per sample, in the same sample order on every
line (``!Sample_title``, ``!Sample_geo_accession``, ``!Sample_source_name_ch1``, ``!Sample_description``, ...);
``!Sample_characteristics_ch1`` repeats, one line per characteristic, each cell ``"key: value"`` (e.g.
``"subgroup: WNT"``), and when the samples do not all carry the same characteristics a key can sit on different
lines for different samples, or a cell can be empty. Then ``!series_matrix_table_begin``, the data table (a header
``"ID_REF"`` and the GSM accessions, one row per platform probe), and ``!series_matrix_table_end``. The table is
empty when the submitters gave the processed values only as a supplementary file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

from ..params import Expression
from ..textfiles import open_text, reading, split
from .tables import MatrixFile, assemble, check_unique, join_labels, matrix_header, orient, read_matrix

log = get_logger(__name__)

BEGIN, END = "!series_matrix_table_begin", "!series_matrix_table_end"


class SeriesMatrix(NamedTuple):
    """A parsed series matrix: ``samples`` one row per sample (index: the GSM accession) with a column per
    ``!Sample_`` field (``title``, ``geo_accession``, ``description``, ...; a field repeated on several lines gets
    ``_2``, ``_3``) and one per characteristic key; ``table_line`` the 0-based line of the table's header (None
    when there is no table), ``table_rows`` its number of data rows; ``keys`` the characteristic keys in order."""

    samples: pd.DataFrame
    table_line: int | None
    table_rows: int
    keys: list[str]


def is_series_matrix(path) -> bool:
    """True when the file's first line is a ``!Series_`` (or ``!Sample_``) line."""
    with reading(path, "the file"), open_text(path, errors="replace") as fh:
        first = fh.readline()
    return first.startswith(("!Series_", "!Sample_"))


def read_series_matrix(path) -> SeriesMatrix:
    """Parse the ``!Sample_`` lines of a series matrix and locate its data table (not read here)."""
    fields: dict[str, list[str]] = {}
    characteristics: list[list[str]] = []
    table_line = end_line = None
    with reading(path, "the series matrix"), open_text(path) as fh:
        for n, line in enumerate(fh):
            line = line.rstrip("\r\n")
            if table_line is not None:
                if line.startswith(END):
                    end_line = n
                    break
                continue
            if line.startswith(BEGIN):
                table_line = n + 1
            elif line.startswith("!Sample_"):
                cells = split(line, "\t")
                name = cells[0][len("!Sample_") :]
                if name.startswith("characteristics_"):
                    characteristics.append(cells[1:])
                else:
                    key, i = name, 2
                    while key in fields:
                        key, i = f"{name}_{i}", i + 1
                    fields[key] = cells[1:]
    accessions = fields.get("geo_accession")
    if not accessions:
        raise UserError(
            f"{path}: no !Sample_geo_accession line; is this a GEO series matrix file (GSE..._series_matrix.txt.gz)?"
        )
    n = len(accessions)
    for name, values in [*fields.items(), *(("characteristics", c) for c in characteristics)]:
        if len(values) != n:
            raise UserError(
                f"{path}: the !Sample_{name} line has {len(values)} cells for {n} samples; is the file "
                "complete? Download it again"
            )
    samples = pd.DataFrame(fields, index=pd.Index(accessions, dtype=object))
    if not samples.index.is_unique:
        raise UserError(f"{path}: a GSM accession repeats on the !Sample_geo_accession line; download the file again")
    by_key: dict[str, dict[str, str]] = {}
    for cells in characteristics:
        for accession, cell in zip(accessions, cells, strict=False):
            if not cell.strip():
                continue
            key, sep, value = cell.partition(":")
            key, value = (key.strip(), value.strip()) if sep else ("characteristics", cell.strip())
            if value:
                by_key.setdefault(key, {})[accession] = value
            else:
                by_key.setdefault(key, {})
    keys = []
    for key, values in by_key.items():
        column = key if key not in fields else f"characteristics: {key}"
        samples[column] = pd.Series(values, dtype=object).reindex(samples.index)
        keys.append(column)
    if table_line is not None and end_line is None:
        raise UserError(f"{path}: the data table has no {END} line; the file is truncated, download it again")
    rows = 0 if table_line is None else end_line - table_line - 1
    samples.index.name = None
    return SeriesMatrix(samples, table_line if rows > 0 else None, max(rows, 0), keys)


def label_column(series: SeriesMatrix, key: str, path, what: str = "label_key") -> str:
    """``key`` if it is a characteristic or a ``!Sample_`` field of the series, else a one-line error naming the
    characteristic keys (and, for a covariate, which is often a field such as ``source_name_ch1``, the fields)."""
    if key in series.samples.columns:
        return key
    fields = [c for c in series.samples.columns if c not in series.keys]
    also = f" and the !Sample_ fields {fields}" if what == "covariates" else ""
    raise UserError(
        f"{path}: expression.{what} '{key}' is not a characteristic of the samples (the "
        f"!Sample_characteristics_ch1 keys are {series.keys or 'none'}{also}); set it to one of them"
    )


def match_field(series: SeriesMatrix, ids: list[str], field: str | None) -> tuple[str, int]:
    """The ``!Sample_`` field (``field`` if given) whose values name the most of ``ids``, and how many it names."""
    candidates = [field] if field else [c for c in series.samples.columns if c not in series.keys]
    wanted = set(ids)
    best = max(candidates, key=lambda c: len(wanted & set(series.samples[c].dropna())) if c in series.samples else -1)
    if best not in series.samples:
        raise UserError(
            f"expression.sample_column '{field}' is not a !Sample_ field of the series matrix "
            f"(have: {[c for c in series.samples.columns if c not in series.keys]})"
        )
    return best, len(wanted & set(series.samples[best].dropna()))


#: header names of a gene-symbol column among a supplementary matrix's leading annotation columns
SYMBOL_HEADERS = {
    "symbol",
    "gene_symbol",
    "gene symbol",
    "genesymbol",
    "gene_name",
    "gene name",
    "hgnc_symbol",
    "description",
    "gene",
}


def symbol_column(annotation: list[str]) -> int | None:
    """The gene-symbol column among a supplementary matrix's annotation columns (not the first, the row id): a header
    naming a symbol first (GSE85217's ``HGNC_symbol_from_ensemblv77``, after ``Probe.Set.Name`` and two others),
    else one of ``SYMBOL_HEADERS`` (gene_name, description, ...)."""
    names = [h.strip().lower() for h in annotation]
    ranked = [
        (0 if "symbol" in n else 1, i) for i, n in enumerate(names) if i and ("symbol" in n or n in SYMBOL_HEADERS)
    ]
    return min(ranked)[1] if ranked else None


def read(expression: Expression):
    """A GEO series: labels from the series matrix (``labels``, or ``path`` itself) and values from its data table
    (``path`` = the series matrix) or from the series' supplementary matrix (genes x samples). -> AnnData."""
    series_path = expression.labels or expression.path
    if not is_series_matrix(series_path):
        raise UserError(
            f"{series_path}: not a GEO series matrix (it should start with !Series_ lines); set "
            "expression.labels to the series' GSE..._series_matrix.txt.gz"
        )
    series = read_series_matrix(series_path)
    for what, key in expression.metadata_keys():
        label_column(series, key, series_path, what)
    missing_ok = expression.missing == "drop_genes"
    if expression.labels is None or Path(expression.labels).resolve() == Path(expression.path).resolve():
        if series.table_line is None:
            raise UserError(
                f"{series_path}: the series matrix has no data table (its values are in a supplementary "
                "file); set expression.path to that file and expression.labels to this series matrix"
            )
        table = read_matrix(
            MatrixFile(series_path, sep="\t", skiprows=series.table_line, nrows=series.table_rows),
            expression.negatives_ok,
            missing_ok=missing_ok,
            transpose=True,
        )
        labels = series.samples
    else:
        header, sep = matrix_header(expression.path, None, "\t", 0)
        field, hits = match_field(series, header, expression.sample_column)
        if hits == 0:
            raise UserError(
                f"{expression.path}: no column header (e.g. {header[min(1, len(header) - 1)]!r}) names a sample "
                f"of {series_path} (titles e.g. "
                f"{series.samples['title'].iloc[0] if 'title' in series.samples else None!r}, "
                f"accessions e.g. {series.samples.index[0]!r}); check that both files are of the same series"
            )
        labels = series.samples.dropna(subset=[field])
        check_unique(labels[field], f"!Sample_{field} values", series_path)
        labels = labels.set_index(labels[field].astype(str))
        first = next(i for i, h in enumerate(header) if h in labels.index)
        if first == 0:
            raise UserError(
                f"{expression.path}: the first column is a sample ({header[0]!r}); expected gene ids first, "
                "then one column per sample (genes x samples)"
            )
        strays = [h for h in header[first:] if h not in labels.index]
        if strays:
            raise UserError(
                f"{expression.path}: {len(strays)} columns after the first sample name no sample of "
                f"{series_path} (e.g. {strays[0]!r}); remove them or use the matching series matrix"
            )
        symbol = symbol_column(header[:first])
        table = read_matrix(
            MatrixFile(expression.path, sep=sep, n_id_columns=first, info_column=symbol),
            expression.negatives_ok,
            missing_ok=missing_ok,
            transpose=True,
        )
        log.info(
            "%s: %d samples matched to %s by !Sample_%s; %d annotation column(s) before them",
            expression.path,
            len(table.col_ids),
            series_path,
            field,
            first,
        )
    X, samples, genes = orient(table, "genes_x_samples", expression.path)
    obs = join_labels(samples, labels, expression.path, series_path)
    var = pd.DataFrame(index=pd.Index(genes))
    if table.row_info is not None:
        var["symbol"] = table.row_info
    return assemble(X, obs, var)
