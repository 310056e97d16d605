"""What the formats share: matrix tables streamed with pyarrow, label tables (csv, tsv, xlsx), sample-label joins,
orientation, the checks every reader's result passes, and the gene filter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

from ..params import Expression
from ..textfiles import compression, default_sep, first_line, head, reading, sniff_sep, split

log = get_logger(__name__)


def peek_orientation(path, header: list[str], sep: str, known: set, n_rows: int = 1000) -> str:
    """The orientation when the header and the first ``n_rows`` row ids settle it (one axis at least half
    labelled samples, the other none), else 'auto' (the whole file is read and ``detect_orientation`` decides)."""
    rows = [split(line, sep)[0] for line in head(path, n_rows + 1)[1:] if line.strip()]
    col_share = float(np.mean([h in known for h in header[1:]])) if len(header) > 1 else 0.0
    row_share = float(np.mean([r in known for r in rows])) if rows else 0.0
    if col_share >= 0.5 and row_share == 0:
        return "genes_x_samples"
    if row_share >= 0.5 and col_share == 0:
        return "samples_x_genes"
    return "auto"


def labelled_only(X: np.ndarray, samples: list[str], keys: list, path, labels_path):
    """(X, samples) without the samples whose labels key is None (logged); an error when none is labelled."""
    found = np.array([k is not None for k in keys], dtype=bool)
    if len(found) and not found.any():
        raise UserError(
            f"{path}: no labelled sample among its samples (e.g. {samples[0]!r}) in {labels_path}; "
            "check expression.sample_column and that the two files belong together"
        )
    if found.all():
        return X, samples
    log_left_out(path, int((~found).sum()), len(samples), labels_path)
    return X[found], [s for s, ok in zip(samples, found, strict=False) if ok]


def log_left_out(path, left_out: int, total: int, labels_path) -> None:
    if left_out:
        log.info("%s: %d of %d samples have no row in %s; left out", path, left_out, total, labels_path)


def detect_orientation(row_ids, col_ids, label_ids, path, labels_path) -> str:
    """'samples_x_genes' when the row ids are the labelled samples, 'genes_x_samples' when the column ids are.

    An axis "matches clearly" when at least half its ids are in the labels table. Neither axis matching at all,
    or both matching clearly, is an error asking for ``expression.orientation``.
    """
    known = pd.Index(label_ids)
    rows = float(pd.Index(row_ids).isin(known).mean()) if len(row_ids) else 0.0
    cols = float(pd.Index(col_ids).isin(known).mean()) if len(col_ids) else 0.0
    hint = "set expression.orientation to samples_x_genes or genes_x_samples"
    if rows == 0 and cols == 0:
        raise UserError(
            f"{path}: neither the row ids (e.g. {row_ids[0]!r}) nor the column ids (e.g. {col_ids[0]!r}) "
            f"match the sample ids of {labels_path} (e.g. {known[0] if len(known) else None!r}); "
            "fix the ids or the labels' sample column"
        )
    if rows >= 0.5 and cols >= 0.5:
        raise UserError(f"{path}: both the row and the column ids match sample ids of {labels_path}; {hint}")
    orientation = "samples_x_genes" if rows > cols else "genes_x_samples"
    log.info(
        "%s: %s (%.0f%% of rows, %.0f%% of columns are labelled samples)", path, orientation, 100 * rows, 100 * cols
    )
    return orientation


def no_barcode(expression: Expression, example, labels) -> UserError:
    return UserError(
        f"{expression.path}: no sample barcode (e.g. {example!r}) matches a sample id of {expression.labels} "
        f"(e.g. {labels.index[0] if len(labels) else None!r}); the labels' ids must be the matrix "
        "barcodes or a TCGA prefix of them such as TCGA-02-0047-01"
    )


class Table(NamedTuple):
    """A matrix file as read: values (n_rows, n_columns) float32, row ids, column ids, and a second id column."""

    values: np.ndarray
    row_ids: list[str]
    col_ids: list[str]
    row_info: list[str] | None
    left_out: int = 0  # rows or columns left out by keep_row / keep_column


def matrix_header(path, sep: str | None, default_sep: str, skiprows: int) -> tuple[list[str], str]:
    """(the header's fields, the separator) of a matrix file whose header is line ``skiprows`` (0-based)."""
    lines = head(path, skiprows + 2)
    if len(lines) <= skiprows or not lines[skiprows].strip():
        raise UserError(f"{path}: the file is empty; expected a header row of ids, then one row per gene or sample")
    sep = sep or sniff_sep(lines[skiprows], default_sep)
    header = split(lines[skiprows], sep)
    if len(lines) > skiprows + 1 and len(split(lines[skiprows + 1], sep)) == len(header) + 1:
        header = ["", *header]  # R's write.table leaves out the row-id column's header
    return header, sep


@dataclass(frozen=True)
class MatrixFile:
    """A delimited matrix file (plain or gzip) and its layout as its format describes it: after ``skiprows`` lines,
    a header of column ids (separated by ``sep``; None: sniffed from the header, ``default_sep`` when that cannot
    tell), then one row per id (``nrows`` rows, default: to the end of the file; ``expected_rows``: the number the
    file declares, when it does). The first ``n_id_columns`` columns are not values: column ``first_id`` holds the
    row ids and ``info_column`` (default: the next one, when it is among them) ``row_info`` (other id columns are
    skipped)."""

    path: str | Path
    sep: str | None = None
    default_sep: str = ","
    skiprows: int = 0
    n_id_columns: int = 1
    first_id: int = 0
    info_column: int | None = None
    nrows: int | None = None
    expected_rows: int | None = None


def read_matrix(
    matrix: MatrixFile,
    negatives_ok: bool,
    missing_ok: bool = False,
    keep_column=None,
    keep_row=None,
    transpose: bool = False,
) -> Table:
    """A delimited matrix file -> Table; every cell after the id columns must be a number.

    ``keep_column(id)`` / ``keep_row(id)``: value columns / rows for which it is false are left out as the file is
    read (streamed in blocks, ``streaming.stream_matrix``: only the kept values are ever stored, as float32; the
    file's ``expected_rows``, when it declares them, lets the blocks go straight into the result). ``transpose``:
    the values are stored columns-first, so that ``values.T`` (the samples x genes matrix of a genes x samples
    file) costs no copy. Values are checked block by block (NaN/inf unless ``missing_ok`` allows NaN, negatives
    unless ``negatives_ok``).
    """
    from ..streaming import MatrixSource, NonNumeric, stream_matrix

    path, skiprows, n_id_columns, first_id = matrix.path, matrix.skiprows, matrix.n_id_columns, matrix.first_id
    header, sep = matrix_header(path, matrix.sep, matrix.default_sep, skiprows)
    info_column = matrix.info_column
    if info_column is None and n_id_columns > first_id + 1:
        info_column = first_id + 1
    if len(header) <= n_id_columns:
        raise UserError(
            f"{path}: the header has {len(header)} column(s); expected row ids then one column per "
            f"sample or gene (is the separator {sep!r} right?)"
        )
    value_columns = [j for j in range(n_id_columns, len(header)) if keep_column is None or keep_column(header[j])]
    col_ids = [header[j] for j in value_columns]
    if not value_columns:
        raise UserError(
            f"{path}: no column of the matrix is a labelled sample (e.g. {header[n_id_columns]!r}); "
            "check the labels' sample ids"
        )

    def check(block, row_ids, _):
        check_values(block, row_ids, col_ids, path, negatives_ok, axes=("row", "column"), missing_ok=missing_ok)

    try:
        streamed = stream_matrix(
            MatrixSource(
                path,
                sep,
                skiprows=skiprows + 1,
                n_columns=len(header),
                id_column=first_id,
                info_column=info_column,
                nrows=matrix.nrows,
                expected_rows=matrix.expected_rows,
            ),
            value_columns,
            transpose,
            keep_row=keep_row,
            check=check,
        )
    except NonNumeric as exc:
        raise non_numeric(path, sep, skiprows + 1, first_id, exc.column, header, matrix.nrows) from None
    if not streamed.row_ids:
        if keep_row is not None:
            raise UserError(f"{path}: no row of the matrix is a labelled sample; check the labels' sample ids")
        raise UserError(f"{path}: the header is there but no data rows follow; is the file complete?")
    return Table(
        values=streamed.values,
        row_ids=[str(r) for r in streamed.row_ids],
        col_ids=col_ids,
        row_info=streamed.row_info,
        left_out=streamed.rows_left_out + (len(header) - n_id_columns - len(value_columns)),
    )


def non_numeric(
    path, sep: str, skiprows: int, id_column: int, column: int, header: list[str], nrows: int | None
) -> UserError:
    """The UserError naming the first non-numeric cell of value column ``column`` (re-read as text, with the ids:
    two columns only)."""
    with reading(path, "the matrix"):
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=skiprows,
            usecols=[id_column, column],
            dtype=str,
            compression=compression(path),
            nrows=nrows,
            names=range(len(header)),
        )
    text = frame[column]
    bad = pd.to_numeric(text, errors="coerce").isna() & text.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        return UserError(
            f"{path}: non-numeric value {text.iloc[i]!r} in row {frame[id_column].iloc[i]!r} (line "
            f"{skiprows + i + 1}), column {header[column]!r}; the matrix must hold numbers only"
        )
    return UserError(
        f"{path}: column {header[column]!r} holds values that are not numbers; check the separator and the file"
    )


def orient(table: Table, orientation: str, path) -> tuple[np.ndarray, list[str], list[str]]:
    """A Table -> (X samples x genes float32 C-ordered, sample ids, gene ids), both id lists checked unique."""
    if orientation == "samples_x_genes":
        X, samples, genes = table.values, table.row_ids, table.col_ids
    else:
        X, samples, genes = np.ascontiguousarray(table.values.T), table.col_ids, table.row_ids
    check_unique(samples, "sample ids", path)
    check_unique(genes, "gene ids", path)
    return X, samples, genes


def read_labels(
    expression: Expression,
    derive_donor: bool = False,
    path=None,
    sample_column: str | None = None,
    extra: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The labels table (``path``, default ``expression.labels``) -> DataFrame indexed by sample id (str) with the
    ``label_key`` (and ``group_key``, the ``covariates``, and any ``extra`` columns present) columns, as text.

    Sample ids are in ``sample_column`` (default: ``expression.sample_column``, else the first column). A Single Cell
    Portal metadata file's second header row (``TYPE``, group/numeric) is skipped. With ``expression.phenotypes`` (GTEx
    subject phenotypes), label, group and covariate columns may come from that table, joined through each sample's
    donor. With ``derive_donor``, a missing ``group_key`` column is derived from the GTEx sample ids (see
    ``gtex_donor``). A metadata column (``Expression.metadata_keys``) that is in neither table is an error.
    """
    from .gtex import gtex_donor  # GTEx's id rule; imported here, as gtex.py reads its tables through this module

    path = path or expression.labels
    if path is None:
        raise UserError(
            f"expression.labels is required with format '{expression.format}': a CSV/TSV table of sample id -> "
            f"{expression.label_key}"
        )
    sheet = read_excel(path, expression.label_key) if is_xlsx(path) else None
    if sheet is not None:
        columns = list(sheet.columns)
    else:
        lines = head(path, 1)
        if not lines or not lines[0].strip():
            raise UserError(f"{path}: the labels file is empty; expected a header row, then one row per sample")
        sep = sniff_sep(lines[0], default_sep(path))
        columns = split(lines[0], sep)
    sample_column = sample_column or expression.sample_column or columns[0]
    phenotypes = read_phenotypes(expression.phenotypes) if expression.phenotypes else None
    available = columns + ([] if phenotypes is None else list(phenotypes.columns))
    derive = derive_donor and expression.group_key not in available
    if sample_column not in columns:
        raise UserError(
            f"{path}: expression.sample_column '{sample_column}' is not a column of the labels table "
            f"(have: {columns[:20]}{' ...' if len(columns) > 20 else ''})"
        )
    metadata = [(key, name) for key, name in expression.metadata_keys() if not (derive and key == "group_key")]
    for key, name in metadata:
        if name not in available:
            where = "the labels table" + ("" if phenotypes is None else f" or of {expression.phenotypes}")
            raise UserError(
                f"{path}: expression.{key} '{name}' is not a column of {where} "
                f"(have: {available[:20]}{' ...' if len(available) > 20 else ''})"
            )
    names = [name for _, name in metadata]
    wanted = list(dict.fromkeys(c for c in (sample_column, *names, *extra) if c in columns))
    if sheet is not None:
        table = sheet[wanted]
    else:
        with reading(path, "the labels table"):
            table = pd.read_csv(path, sep=sep, usecols=wanted, dtype=str, compression=compression(path))
    table = table.dropna(subset=[sample_column]).set_index(sample_column)
    table.index = table.index.astype(str)
    table.index.name = None
    if len(table) and table.index[0] == "TYPE":  # Single Cell Portal metadata: NAME header, then TYPE row
        table = table.iloc[1:]
    for name in names:
        if name == sample_column:  # e.g. TCGA patients: the row id is also the group
            table[name] = table.index
    check_unique(table.index, f"sample ids (column '{sample_column}')", path)
    if phenotypes is not None:
        donors = [gtex_donor(s) for s in table.index]
        for key in names:
            if key not in table and key in phenotypes:
                values = phenotypes[key].reindex(donors)
                if key == "SEX":  # GTEx's data dictionary: 1 = male, 2 = female
                    values = values.replace({"1": "male", "2": "female"})
                table[key] = values.to_numpy()
    if derive:
        table[expression.group_key] = [gtex_donor(s) for s in table.index]
        log.info(
            "%s: no '%s' column; donors derived from the sample ids (GTEX-1117F-0226-... -> GTEX-1117F)",
            path,
            expression.group_key,
        )
    return table


def is_xlsx(path) -> bool:
    """True for an Excel workbook (.xlsx: a zip archive), whatever its name."""
    with reading(path, "the file"), open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def read_excel(path, label_key: str) -> pd.DataFrame:
    """The first sheet of an .xlsx labels table, all cells as text. Its header is the first row holding
    ``label_key`` (GEO's supplementary workbooks may start with a title row or two)."""
    with reading(path, "the labels workbook"):
        try:
            raw = pd.read_excel(path, sheet_name=0, header=None, dtype=str, engine="openpyxl")
        except Exception as exc:  # zipfile.BadZipFile, openpyxl's InvalidFileException, KeyError for a bad archive
            raise UserError(
                f"{path}: cannot read as an .xlsx workbook ({type(exc).__name__}: {first_line(exc)}); "
                "is the file complete?"
            ) from None
    rows = [i for i in range(len(raw)) if label_key in set(raw.iloc[i].dropna().str.strip())]
    if not rows:
        raise UserError(
            f"{path}: no row of the workbook's first sheet holds the column name "
            f"expression.label_key '{label_key}' (first row: {raw.iloc[0].dropna().tolist()[:10] if len(raw) else []})"
        )
    header = [str(c).strip() if isinstance(c, str) else f"column_{j}" for j, c in enumerate(raw.iloc[rows[0]])]
    table = raw.iloc[rows[0] + 1 :].copy()
    table.columns = header
    return table.dropna(how="all").reset_index(drop=True)


def read_phenotypes(path) -> pd.DataFrame:
    """The GTEx subject-phenotype table (SUBJID, SEX, AGE, DTHHRDY; tab separated) indexed by SUBJID."""
    lines = head(path, 1)
    columns = split(lines[0], sniff_sep(lines[0], "\t")) if lines else []
    if "SUBJID" not in columns:
        raise UserError(
            f"{path}: expression.phenotypes has no SUBJID column (have: {columns[:10]}); expected "
            "GTEx's SubjectPhenotypesDS table"
        )
    with reading(path, "the phenotype table"):
        table = pd.read_csv(path, sep=sniff_sep(lines[0], "\t"), dtype=str, compression=compression(path))
    table = table.dropna(subset=["SUBJID"]).set_index("SUBJID")
    check_unique(table.index, "subject ids (SUBJID)", path)
    return table


def join_labels(samples: list[str], labels: pd.DataFrame, path, labels_path, keys=None) -> pd.DataFrame:
    """obs for ``samples``: their rows of ``labels`` (looked up by ``keys``, default the sample ids themselves).

    A sample without a labels row is an error; labels rows without a sample are ignored (and logged).
    """
    keys = pd.Index(samples if keys is None else [k if k is not None else "" for k in keys], dtype=object)
    found = keys.isin(labels.index)
    if len(keys) and not found.any():
        raise UserError(
            f"{labels_path}: none of its sample ids (e.g. {labels.index[0] if len(labels) else None!r}) "
            f"names a sample of {path} (e.g. {samples[0]!r}); check expression.sample_column and that "
            "the two files belong together"
        )
    if not found.all():
        missing = [s for s, ok in zip(samples, found, strict=False) if not ok]
        raise UserError(
            f"{path}: {len(missing)} of {len(samples)} samples have no row in {labels_path} "
            f"(e.g. {missing[0]!r}); add them to the labels table or drop them from the matrix"
        )
    unused = int((~labels.index.isin(keys)).sum())
    if unused:
        log.info("%s: %d of %d rows name no sample of %s; ignored", labels_path, unused, len(labels), path)
    obs = labels.loc[keys].copy()
    obs.index = pd.Index(samples, dtype=object)
    return obs


def assemble(X: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame):
    """X (samples x genes) with its obs and var tables -> AnnData."""
    import anndata as ad

    return ad.AnnData(X=X, obs=obs, var=var)


def check_unique(ids, what: str, path) -> None:
    index = pd.Index(ids)
    if not index.is_unique:
        dups = index[index.duplicated()]
        raise UserError(f"{path}: duplicate {what}, e.g. {dups[0]!r} ({len(dups)} repeated); each id must be unique")


#: the prefix of the obs columns ``check_obs`` copies each covariate to (clear of 'label', 'group' and the source's
#: own columns)
COVARIATE_PREFIX = "covariate:"


def check_obs(adata, expression: Expression, source) -> None:
    """obs[label_key] -> obs['label'] (str), obs[group_key] -> obs['group'] (str), each covariate ``c`` ->
    obs['covariate:c'] (str, '' where missing: unlike labels, a covariate may be missing); ``source`` is their
    file."""
    for key, name in expression.metadata_keys():
        if name not in adata.obs:
            raise UserError(
                f"{source}: expression.{key} '{name}' is not an obs column (have: {list(adata.obs.columns)})"
            )
    for name in expression.covariates:  # copied first: 'label' or 'group' may be a covariate's own name
        adata.obs[COVARIATE_PREFIX + name] = as_text(adata.obs[name])
    labels = adata.obs[expression.label_key]
    if labels.isna().any():
        raise UserError(
            f"{source}: '{expression.label_key}' has {int(labels.isna().sum())} missing labels "
            f"(e.g. sample {labels.index[labels.isna()][0]!r}); drop or fill them"
        )
    adata.obs["label"] = labels.astype(str).values
    if expression.group_key is not None:
        adata.obs["group"] = adata.obs[expression.group_key].astype(str).values
    check_unique(adata.obs_names, "sample ids (obs names)", expression.path)
    check_unique(adata.var_names, "gene ids (var names)", expression.path)


def as_text(column: pd.Series) -> np.ndarray:
    """A metadata column as text, as read ('7.5', 'male'), and '' for a missing value (NaN, None, a missing
    category)."""
    missing = column.isna().to_numpy()
    return np.where(missing, "", column.astype(object).astype(str).to_numpy()).astype(object)


def check_values(X, row_ids, col_ids, path, negatives_ok: bool, axes=("sample", "gene"), missing_ok=False) -> None:
    """Stop on a non-numeric matrix, NaN (unless ``missing_ok``)/inf, or negative counts; the message names one
    offending cell.

    X: (len(row_ids), len(col_ids)), dense or scipy sparse; ``axes`` names the rows and columns in messages.
    """
    import scipy.sparse as sp

    data = X.data if sp.issparse(X) else np.asarray(X)
    if not np.issubdtype(data.dtype, np.number):
        raise UserError(f"{path}: the expression matrix is not numeric (dtype {data.dtype})")
    finite = (lambda v: ~np.isinf(v)) if missing_ok else np.isfinite
    bad = ~finite(data)
    if bad.any():
        raise UserError(
            f"{path}: the expression matrix holds {int(bad.sum())} {'inf' if missing_ok else 'NaN or inf'} "
            f"values, e.g. {cell(X, finite, False, row_ids, col_ids, axes)}; clean them before running"
            f"{'' if missing_ok else ', or set expression.missing: drop_genes to leave such genes out'}"
        )
    if not negatives_ok and (data < 0).any():
        raise UserError(
            f"{path}: negative values in a matrix of counts, e.g. "
            f"{cell(X, lambda v: v < 0, True, row_ids, col_ids, axes)}; if the data are already "
            "normalised declare expression.scale: normalized"
        )


def cell(X, test, expected: bool, row_ids, col_ids, axes) -> str:
    """'sample 'S1', gene 'G2' (value)' for the first cell where ``test(value) == expected``."""
    import scipy.sparse as sp

    if sp.issparse(X):
        coo = X.tocoo()
        k = int(np.flatnonzero(test(coo.data) == expected)[0])
        i, j, value = coo.row[k], coo.col[k], coo.data[k]
    else:
        X = np.asarray(X)
        i, j = np.argwhere(test(X) == expected)[0]
        value = X[i, j]
    return f"{axes[0]} {row_ids[i]!r}, {axes[1]} {col_ids[j]!r} ({value})"


def read_gene_filter(path: str) -> set[str]:
    """Gene ids, one per line (or the first column of a CSV); ENSEMBL version suffixes are dropped."""
    ids = set()
    for line in Path(path).read_text().splitlines():
        token = line.split(",")[0].split("\t")[0].strip()
        if token and not token.startswith("#"):
            ids.add(strip_version(token))
    if not ids:
        raise UserError(f"{path}: the gene filter is empty")
    return ids


def strip_version(gene_id: str) -> str:
    """'ENSG00000141510.16' -> 'ENSG00000141510'; other ids unchanged."""
    head, dot, tail = gene_id.partition(".")
    return head if dot and head.startswith("ENS") and tail.isdigit() else gene_id
