"""Readers that turn an input file into an AnnData with the label (and group) columns checked.

Every reader returns samples x genes: X numeric (float32 for the table formats; what the file holds for .h5ad),
obs_names the unique sample ids, var_names the unique gene ids, ``var['symbol']`` where the format carries
symbols, and obs holding the label (and group) columns of its label source. ``read_expression`` then adds
``obs['label']`` and ``obs['group']`` as strings. A bad input stops with a one-line ``UserError`` naming the file;
nothing half-read is returned.

Table files (csv/tsv/gct/tcga matrices and label tables) may be plain text or gzip, recognised by their content.

Where each published layout was confirmed (none of the real files could be downloaded here; each fixture follows
the evidence, tests/e2e/test_public_formats.py and fixtures/public.py):
- GTEx v8 GCT 1.2 and the annotation tables: the GTEx portal's data dictionaries and downloads page; the 54
  tissues' RNA-seq sample counts (17,382) from the portal's tissue summary as saved in Sun-lab/gtex_AnVIL
  (data/GTEx_Portal.csv).
- GEO series matrix: NCBI GEO's "Series Matrix File" documentation (geo.py).
- GSE85217's supplementary matrix: public analysis scripts that read it by its column names (``Probe.Set.Name``,
  ``HGNC_symbol_from_ensemblv77``, ``EnsemblGeneID_from_ensemblv77``) and take the samples from the sixth column
  on; the names of its second and third columns were not confirmed.
- GSM3828672 and GSE131928's workbook: scripts reading the Single Cell Portal copy
  (``IDHwtGBM.processed.SS2.logTPM.txt``, "values = log2((tpm/10) + 1)"), a data register recording the GEO file
  as byte-identical to it, 7,930 Smart-seq2 of 24,131 cells, and a parser taking the workbook's header from its
  44th row; the portal's ``IDHwt.GBM.Metadata.SS2.txt`` (NAME, Sample, GBMType, CellAssignment, a TYPE row).
- TCGA PanCanAtlas: GDC's PanCanAtlas manifest (file ids, md5, sizes); the matrix's ``SYMBOL|Entrez`` ids and
  aliquot barcodes (TCGA's barcode documentation for the sample-type field).
- GDC STAR counts and sample sheets: gdc.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from shared.errors import UserError
from shared.logs import get_logger

from . import gdc, geo
from .params import Expression
from .textfiles import compression, default_sep, first_line, head, reading, sniff_sep, split

log = get_logger(__name__)


def read_expression(cfg: Expression):
    """Return an in-memory AnnData (samples x genes) with ``obs['label']`` (str) and optional ``obs['group']`` (str)."""
    readers = {
        "h5ad": _read_h5ad,
        "csv": _read_csv,
        "tsv": _read_csv,
        "gct": _read_gct,
        "tcga": _read_tcga,
        "geo": _read_geo,
        "gdc": _read_gdc,
    }
    if cfg.format not in readers:  # pragma: no cover - the config schema admits only the formats handled above
        raise UserError(f"expression.format: '{cfg.format}' is not supported")
    adata = readers[cfg.format](cfg)
    source = {"h5ad": cfg.path, "gdc": cfg.path, "geo": cfg.labels or cfg.path}.get(cfg.format, cfg.labels)
    _check_obs(adata, cfg, source=source)
    if cfg.format == "gct" and cfg.label_key in ("SMTSD", "SMTS"):
        adata.obs["label"] = [gtex_tissue_name(t) for t in adata.obs["label"]]
    if cfg.missing == "drop_genes":
        adata = _drop_missing_genes(adata, cfg.path)
    return adata


def _drop_missing_genes(adata, path):
    """``expression.missing: drop_genes``: the genes with a NaN in any sample are left out (and counted)."""
    import scipy.sparse as sp

    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    keep = ~np.isnan(X).any(axis=0)
    if not keep.any():
        raise UserError(f"{path}: every gene has a missing value in some sample; nothing is left to train on")
    if not keep.all():
        log.info(
            "%s: %d of %d genes have missing values in some sample; left out (expression.missing: drop_genes)",
            path,
            int((~keep).sum()),
            len(keep),
        )
        adata = adata[:, keep].copy()
    return adata


# ---------------------------------------------------------------------------------------------------- h5ad


def _read_h5ad(cfg: Expression):
    import anndata as ad

    path = Path(cfg.path)
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for truncated or foreign files
        raise UserError(
            f"{path}: cannot read as .h5ad ({type(exc).__name__}: {first_line(exc)}); is the file complete?"
        ) from None
    if cfg.use_raw:
        if adata.raw is None:
            raise UserError(f"{path}: expression.use_raw is true but the file has no .raw")
        adata = ad.AnnData(X=adata.raw.X, obs=adata.obs, var=adata.raw.var)
    elif cfg.layer is not None:
        if cfg.layer not in adata.layers:
            raise UserError(f"{path}: expression.layer '{cfg.layer}' not found (layers: {list(adata.layers)})")
        adata = ad.AnnData(X=adata.layers[cfg.layer], obs=adata.obs, var=adata.var)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(f"{path}: empty matrix ({adata.n_obs} samples x {adata.n_vars} genes)")
    _check_values(adata.X, adata.obs_names, adata.var_names, path, cfg.negatives_ok, axes=("sample", "gene"))
    return adata


# ---------------------------------------------------------------------------------------------------- csv / tsv


def _read_csv(cfg: Expression):
    """csv/tsv: a matrix (samples x genes or genes x samples) plus the labels table -> AnnData samples x genes.

    Only the samples with a row in the labels table are read (the others are logged and left out); with the
    orientation known (set, or clear from the header and the first rows) they are selected as the file streams.
    """
    labels = _read_labels(cfg)
    known = set(labels.index)
    header, sep = _matrix_header(cfg.path, None, "," if cfg.format == "csv" else "\t", 0)
    orientation = cfg.orientation
    if orientation == "auto":
        orientation = _peek_orientation(cfg.path, header, sep, known)
    keep = (lambda sample: sample in known) if orientation != "auto" else None
    table = _read_matrix(
        cfg.path,
        cfg.negatives_ok,
        sep=sep,
        missing_ok=cfg.missing == "drop_genes",
        keep_column=keep if orientation == "genes_x_samples" else None,
        keep_row=keep if orientation == "samples_x_genes" else None,
        transpose=orientation == "genes_x_samples",
    )
    if orientation == "auto":
        orientation = detect_orientation(table.row_ids, table.col_ids, labels.index, cfg.path, cfg.labels)
    X, samples, genes = _orient(table, orientation, cfg.path)
    _log_left_out(cfg.path, table.left_out, len(samples) + table.left_out, cfg.labels)
    X, samples = _labelled_only(X, samples, [s if s in known else None for s in samples], cfg.path, cfg.labels)
    obs = _join_labels(samples, labels, cfg.path, cfg.labels)
    return _assemble(X, obs, pd.DataFrame(index=pd.Index(genes)))


def _peek_orientation(path, header: list[str], sep: str, known: set, n_rows: int = 1000) -> str:
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


def _labelled_only(X: np.ndarray, samples: list[str], keys: list, path, labels_path):
    """(X, samples) without the samples whose labels key is None (logged); an error when none is labelled."""
    found = np.array([k is not None for k in keys], dtype=bool)
    if len(found) and not found.any():
        raise UserError(
            f"{path}: no labelled sample among its samples (e.g. {samples[0]!r}) in {labels_path}; "
            "check expression.sample_column and that the two files belong together"
        )
    if found.all():
        return X, samples
    _log_left_out(path, int((~found).sum()), len(samples), labels_path)
    return X[found], [s for s, ok in zip(samples, found, strict=False) if ok]


def _log_left_out(path, left_out: int, total: int, labels_path) -> None:
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


# ---------------------------------------------------------------------------------------------------- GTEx GCT


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


def _read_gct(cfg: Expression):
    """GTEx v8 GCT files (``path`` + ``more_paths``) concatenated by samples -> AnnData samples x genes.

    X float32 (n_samples_total, n_genes); var_names the ``Name`` ids (ENSEMBL with version), ``var['symbol']``
    the ``Description`` column; obs from the sample-attribute table (``labels``).
    """
    labels = _read_labels(cfg, derive_donor=cfg.group_key == "donor")
    known = set(labels.index)
    paths = [cfg.path, *cfg.more_paths]
    headers = [_read_gct_header(p) for p in paths]
    all_samples = _concat_ids([h[1] for h in headers], paths)
    samples = [s for s in all_samples if s in known]
    if not samples:
        raise UserError(
            f"{cfg.labels}: none of its sample ids (e.g. {labels.index[0] if len(labels) else None!r}) "
            f"names a sample of {cfg.path} (e.g. {all_samples[0]!r}); check expression.sample_column "
            "(GTEx: SAMPID) and that the two files belong together"
        )
    if len(samples) < len(all_samples):
        _log_left_out(cfg.path, len(all_samples) - len(samples), len(all_samples), cfg.labels)
    n_genes = headers[0][0]
    X = genes = symbols = None
    start = 0
    for path, (declared, _file_samples, lead) in zip(paths, headers, strict=False):
        table = _read_matrix(
            path,
            cfg.negatives_ok,
            sep="\t",
            skiprows=2,
            n_id_columns=2 + lead,
            first_id=lead,
            missing_ok=cfg.missing == "drop_genes",
            keep_column=known.__contains__,
            transpose=True,
            expected_rows=declared,
        )
        if len(table.row_ids) != declared:
            raise UserError(
                f"{path}: line 2 declares {declared} genes but the file holds {len(table.row_ids)}; "
                "is the file complete? Download it again"
            )
        values, file_genes = table.values, pd.Index(table.row_ids)
        if genes is None:
            _check_unique(file_genes, "gene ids (Name column)", path)
            genes, symbols = file_genes, table.row_info
        elif not file_genes.equals(genes):
            values = _align_genes(values, file_genes, genes, path, paths[0])
        if len(paths) == 1:
            X = values.T  # stored samples-first by the reader: no copy
            break
        if X is None:  # several files: filled file by file, so their data are never held twice
            X = np.empty((len(samples), n_genes), dtype=np.float32)
        X[start : start + values.shape[1]] = values.T
        start += values.shape[1]
    obs = _join_labels(samples, labels, cfg.path, cfg.labels)
    return _assemble(X, obs, pd.DataFrame({"symbol": symbols}, index=genes))


def _read_gct_header(path) -> tuple[int, list[str], int]:
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


def _concat_ids(per_file: list[list[str]], paths: list) -> list[str]:
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


def _align_genes(values: np.ndarray, genes: pd.Index, reference: pd.Index, path, reference_path) -> np.ndarray:
    """Rows of ``values`` (genes x samples) reordered to ``reference``; a different gene set is an error."""
    _check_unique(genes, "gene ids (Name column)", path)
    if len(genes) != len(reference) or not genes.isin(reference).all():
        extra = genes.difference(reference)
        example = extra[0] if len(extra) else reference.difference(genes)[0]
        raise UserError(
            f"{path}: its gene ids differ from those of {reference_path} (e.g. {example!r}); "
            "all GCT files must come from the same GTEx release"
        )
    return values[genes.get_indexer(reference)]


# ---------------------------------------------------------------------------------------------------- TCGA


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


def _log_other_types(path, left_out, types) -> None:
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


def _read_tcga(cfg: Expression):
    """A TCGA matrix (genes x samples unless ``orientation`` says otherwise) plus the labels table -> AnnData.

    X float32 (n_samples, n_genes); var_names the whole gene ids, ``var['symbol']`` their part before '|'
    ('TP53|7157' -> 'TP53') when the ids have that form; obs_names the matrix barcodes, labelled per
    ``match_tcga_barcodes``.
    """
    labels = _read_labels(cfg)
    orientation = "genes_x_samples" if cfg.orientation == "auto" else cfg.orientation
    header, sep = _matrix_header(cfg.path, None, default_sep(cfg.path), 0)
    known = set(labels.index)  # built once: labelled() is called for every column (or row) of the matrix
    types = set(cfg.sample_types)
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
                f"{cfg.path}: no sample of the kept sample types ({', '.join(sorted(types))}) matches {cfg.labels}; "
                f"{len(other_type)} samples of other types (e.g. {example!r}, type {example[13:15]}) are left out: "
                "set expression.sample_types"
            )
        raise _no_barcode(cfg, header[1] if len(header) > 1 else None, labels)
    table = _read_matrix(
        cfg.path,
        cfg.negatives_ok,
        sep=sep,
        missing_ok=cfg.missing == "drop_genes",
        keep_column=kept.__contains__ if kept is not None else None,
        keep_row=labelled if orientation == "samples_x_genes" else None,
        transpose=orientation == "genes_x_samples",
    )
    X, samples, genes = _orient(table, orientation, cfg.path)
    _log_other_types(cfg.path, other_type, types)
    _log_left_out(cfg.path, table.left_out - len(other_type), len(samples) + table.left_out, cfg.labels)
    keys = match_tcga_barcodes(samples, labels.index)
    obs = _join_labels(samples, labels, cfg.path, cfg.labels, keys=keys)
    var = pd.DataFrame(index=pd.Index(genes))
    if any("|" in g for g in genes):
        var["symbol"] = [g.split("|", 1)[0] for g in genes]
    return _assemble(X, obs, var)


# ---------------------------------------------------------------------------------------------------- GEO

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


def _symbol_column(annotation: list[str]) -> int | None:
    """The gene-symbol column among a supplementary matrix's annotation columns (not the first, the row id): a header
    naming a symbol first (GSE85217's ``HGNC_symbol_from_ensemblv77``, after ``Probe.Set.Name`` and two others),
    else one of ``SYMBOL_HEADERS`` (gene_name, description, ...)."""
    names = [h.strip().lower() for h in annotation]
    ranked = [
        (0 if "symbol" in n else 1, i) for i, n in enumerate(names) if i and ("symbol" in n or n in SYMBOL_HEADERS)
    ]
    return min(ranked)[1] if ranked else None


def _no_barcode(cfg: Expression, example, labels) -> UserError:
    return UserError(
        f"{cfg.path}: no sample barcode (e.g. {example!r}) matches a sample id of {cfg.labels} "
        f"(e.g. {labels.index[0] if len(labels) else None!r}); the labels' ids must be the matrix "
        "barcodes or a TCGA prefix of them such as TCGA-02-0047-01"
    )


def _read_geo(cfg: Expression):
    """A GEO series: labels from the series matrix (``labels``, or ``path`` itself) and values from its data table
    (``path`` = the series matrix) or from the series' supplementary matrix (genes x samples). -> AnnData."""
    series_path = cfg.labels or cfg.path
    if not geo.is_series_matrix(series_path):
        raise UserError(
            f"{series_path}: not a GEO series matrix (it should start with !Series_ lines); set "
            "expression.labels to the series' GSE..._series_matrix.txt.gz"
        )
    series = geo.read_series_matrix(series_path)
    for key, what in ((cfg.label_key, "label_key"), (cfg.group_key, "group_key")):
        if key is not None:
            geo.label_column(series, key, series_path, what)
    missing_ok = cfg.missing == "drop_genes"
    if cfg.labels is None or Path(cfg.labels).resolve() == Path(cfg.path).resolve():
        if series.table_line is None:
            raise UserError(
                f"{series_path}: the series matrix has no data table (its values are in a supplementary "
                "file); set expression.path to that file and expression.labels to this series matrix"
            )
        table = _read_matrix(
            series_path,
            cfg.negatives_ok,
            sep="\t",
            skiprows=series.table_line,
            nrows=series.table_rows,
            missing_ok=missing_ok,
            transpose=True,
        )
        labels = series.samples
    else:
        header, sep = _matrix_header(cfg.path, None, "\t", 0)
        field, hits = geo.match_field(series, header, cfg.sample_column)
        if hits == 0:
            raise UserError(
                f"{cfg.path}: no column header (e.g. {header[min(1, len(header) - 1)]!r}) names a sample "
                f"of {series_path} (titles e.g. "
                f"{series.samples['title'].iloc[0] if 'title' in series.samples else None!r}, "
                f"accessions e.g. {series.samples.index[0]!r}); check that both files are of the same series"
            )
        labels = series.samples.dropna(subset=[field])
        _check_unique(labels[field], f"!Sample_{field} values", series_path)
        labels = labels.set_index(labels[field].astype(str))
        first = next(i for i, h in enumerate(header) if h in labels.index)
        if first == 0:
            raise UserError(
                f"{cfg.path}: the first column is a sample ({header[0]!r}); expected gene ids first, "
                "then one column per sample (genes x samples)"
            )
        strays = [h for h in header[first:] if h not in labels.index]
        if strays:
            raise UserError(
                f"{cfg.path}: {len(strays)} columns after the first sample name no sample of "
                f"{series_path} (e.g. {strays[0]!r}); remove them or use the matching series matrix"
            )
        symbol = _symbol_column(header[:first])
        table = _read_matrix(
            cfg.path,
            cfg.negatives_ok,
            sep=sep,
            n_id_columns=first,
            info_column=symbol,
            missing_ok=missing_ok,
            transpose=True,
        )
        log.info(
            "%s: %d samples matched to %s by !Sample_%s; %d annotation column(s) before them",
            cfg.path,
            len(table.col_ids),
            series_path,
            field,
            first,
        )
    X, samples, genes = _orient(table, "genes_x_samples", cfg.path)
    obs = _join_labels(samples, labels, cfg.path, series_path)
    var = pd.DataFrame(index=pd.Index(genes))
    if table.row_info is not None:
        var["symbol"] = table.row_info
    return _assemble(X, obs, var)


# ---------------------------------------------------------------------------------------------------- GDC


def _read_gdc(cfg: Expression):
    """GDC STAR gene-counts files (one per sample, under ``files_dir``) listed by the cart's sample sheet
    (``path``) -> AnnData samples x genes; obs the sheet's columns, obs_names its Sample ID (or the file name when
    a sample has several files); var_names the GENCODE ids, ``var['symbol']`` the gene names."""
    if cfg.files_dir is None:
        raise UserError(
            f"{cfg.path}: expression.files_dir is required with format gdc: the folder the STAR counts "
            "files were downloaded into (gdc-client download -d <folder>)"
        )
    sheet = _read_labels(
        cfg, path=cfg.path, sample_column=cfg.sample_column or "File Name", extra=("File ID", "Sample ID")
    )
    if "Sample ID" in sheet:  # a TCGA cart holds normals beside the tumours, under the same Project ID
        other = sheet["Sample ID"].astype(str).map(tcga_sample_type).isin(set(cfg.sample_types) | {None})
        _log_other_types(cfg.path, list(sheet.loc[~other, "Sample ID"].astype(str)), cfg.sample_types)
        if not other.any():
            raise UserError(
                f"{cfg.path}: every sample of the sheet is of a sample type other than "
                f"{', '.join(cfg.sample_types)} (e.g. {sheet['Sample ID'].iloc[0]}); set expression.sample_types"
            )
        sheet = sheet[other]
    folder = Path(cfg.files_dir)
    ids = sheet["File ID"].tolist() if "File ID" in sheet else None
    found = gdc.find_count_files(folder, list(sheet.index), ids)
    if not found:
        example = f"{ids[0]}/{sheet.index[0]}" if ids else sheet.index[0]
        raise UserError(
            f"{folder}: none of the {len(sheet)} files of {cfg.path} is there (e.g. {example}); download "
            "them into this folder (gdc-client download -m <manifest> -d <folder>) or fix files_dir"
        )
    if len(found) < len(sheet):
        log.info(
            "%s: %d of %d files of the sample sheet are not in %s; left out",
            cfg.path,
            len(sheet) - len(found),
            len(sheet),
            folder,
        )
    names = list(found)
    genes = symbols = X = None
    for i, name in enumerate(names):
        file_genes, file_symbols, values = gdc.read_star_counts(found[name], cfg.counts_column)
        if genes is None:
            genes, symbols = file_genes, file_symbols
            _check_unique(genes, "gene ids (gene_id column)", found[name])
            X = np.empty((len(names), len(genes)), dtype=np.float32)
        elif not np.array_equal(file_genes, genes):
            values = _align_genes(values[:, None], pd.Index(file_genes), pd.Index(genes), found[name], found[names[0]])[
                :, 0
            ]
        X[i] = values
        if (i + 1) % 500 == 0:
            log.info("%s: %d of %d files read", folder, i + 1, len(names))
    _check_values(X, names, list(genes), folder, cfg.negatives_ok, missing_ok=cfg.missing == "drop_genes")
    obs = sheet.loc[names].copy()
    sample_ids = obs["Sample ID"] if "Sample ID" in obs else None
    if sample_ids is not None and sample_ids.notna().all() and sample_ids.is_unique:
        obs.index = pd.Index(sample_ids.astype(str), dtype=object)
    else:
        log.info("%s: a sample has several files (or no Sample ID); samples are named by file", cfg.path)
        obs.index = pd.Index(names, dtype=object)
    obs.index.name = None
    return _assemble(X, obs, pd.DataFrame({"symbol": symbols}, index=pd.Index(genes, dtype=object)))


# ---------------------------------------------------------------------------------------------------- tables


class _Table(NamedTuple):
    """A matrix file as read: values (n_rows, n_columns) float32, row ids, column ids, and a second id column."""

    values: np.ndarray
    row_ids: list[str]
    col_ids: list[str]
    row_info: list[str] | None
    left_out: int = 0  # rows or columns left out by keep_row / keep_column


def _matrix_header(path, sep: str | None, default_sep: str, skiprows: int) -> tuple[list[str], str]:
    """(the header's fields, the separator) of a matrix file whose header is line ``skiprows`` (0-based)."""
    lines = head(path, skiprows + 2)
    if len(lines) <= skiprows or not lines[skiprows].strip():
        raise UserError(f"{path}: the file is empty; expected a header row of ids, then one row per gene or sample")
    sep = sep or sniff_sep(lines[skiprows], default_sep)
    header = split(lines[skiprows], sep)
    if len(lines) > skiprows + 1 and len(split(lines[skiprows + 1], sep)) == len(header) + 1:
        header = ["", *header]  # R's write.table leaves out the row-id column's header
    return header, sep


def _read_matrix(
    path,
    negatives_ok: bool,
    sep: str | None = None,
    default_sep: str = ",",
    skiprows: int = 0,
    n_id_columns: int = 1,
    first_id: int = 0,
    info_column: int | None = None,
    nrows: int | None = None,
    missing_ok: bool = False,
    keep_column=None,
    keep_row=None,
    transpose: bool = False,
    expected_rows: int | None = None,
) -> _Table:
    """A delimited matrix file -> _Table. After ``skiprows`` lines: a header of column ids, then one row per id
    (``nrows`` rows, default: to the end of the file).

    The first ``n_id_columns`` columns are not values: column ``first_id`` holds the row ids and ``info_column``
    (default: the next one, when it is among them) ``row_info`` (other id columns are skipped); every other
    cell must be a number. ``keep_column(id)`` / ``keep_row(id)``: value columns / rows for which it is false
    are left out as the file is read (streamed in blocks, ``streaming.stream_matrix``: only the kept values are
    ever stored, as float32; ``expected_rows``, when the file declares its rows, lets the blocks go straight into
    the result). ``transpose``: the values are stored columns-first, so that ``values.T`` (the
    samples x genes matrix of a genes x samples file) costs no copy. Values are checked block by block
    (NaN/inf unless ``missing_ok`` allows NaN, negatives unless ``negatives_ok``).
    """
    from .streaming import NonNumeric, stream_matrix

    header, sep = _matrix_header(path, sep, default_sep, skiprows)
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
        _check_values(block, row_ids, col_ids, path, negatives_ok, axes=("row", "column"), missing_ok=missing_ok)

    try:
        streamed = stream_matrix(
            path,
            sep,
            skiprows + 1,
            len(header),
            first_id,
            info_column,
            value_columns,
            transpose,
            nrows=nrows,
            keep_row=keep_row,
            check=check,
            expected_rows=expected_rows,
        )
    except NonNumeric as exc:
        raise _non_numeric(path, sep, skiprows + 1, first_id, exc.column, header, nrows) from None
    if not streamed.row_ids:
        if keep_row is not None:
            raise UserError(f"{path}: no row of the matrix is a labelled sample; check the labels' sample ids")
        raise UserError(f"{path}: the header is there but no data rows follow; is the file complete?")
    return _Table(
        values=streamed.values,
        row_ids=[str(r) for r in streamed.row_ids],
        col_ids=col_ids,
        row_info=streamed.row_info,
        left_out=streamed.rows_left_out + (len(header) - n_id_columns - len(value_columns)),
    )


def _non_numeric(
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


def _orient(table: _Table, orientation: str, path) -> tuple[np.ndarray, list[str], list[str]]:
    """A _Table -> (X samples x genes float32 C-ordered, sample ids, gene ids), both id lists checked unique."""
    if orientation == "samples_x_genes":
        X, samples, genes = table.values, table.row_ids, table.col_ids
    else:
        X, samples, genes = np.ascontiguousarray(table.values.T), table.col_ids, table.row_ids
    _check_unique(samples, "sample ids", path)
    _check_unique(genes, "gene ids", path)
    return X, samples, genes


def _read_labels(
    cfg: Expression,
    derive_donor: bool = False,
    path=None,
    sample_column: str | None = None,
    extra: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The labels table (``path``, default ``cfg.labels``) -> DataFrame indexed by sample id (str) with the
    ``label_key`` (and ``group_key``, and any ``extra`` columns present) columns.

    Sample ids are in ``sample_column`` (default: ``cfg.sample_column``, else the first column). A Single Cell
    Portal metadata file's second header row (``TYPE``, group/numeric) is skipped. With ``cfg.phenotypes`` (GTEx
    subject phenotypes), label and group columns may come from that table, joined through each sample's donor.
    With ``derive_donor``, a missing ``group_key`` column is derived from the GTEx sample ids (see ``gtex_donor``).
    """
    path = path or cfg.labels
    if path is None:
        raise UserError(
            f"expression.labels is required with format '{cfg.format}': a CSV/TSV table of sample id -> {cfg.label_key}"
        )
    sheet = _read_excel(path, cfg.label_key) if is_xlsx(path) else None
    if sheet is not None:
        columns = list(sheet.columns)
    else:
        lines = head(path, 1)
        if not lines or not lines[0].strip():
            raise UserError(f"{path}: the labels file is empty; expected a header row, then one row per sample")
        sep = sniff_sep(lines[0], default_sep(path))
        columns = split(lines[0], sep)
    sample_column = sample_column or cfg.sample_column or columns[0]
    phenotypes = _read_phenotypes(cfg.phenotypes) if cfg.phenotypes else None
    available = columns + ([] if phenotypes is None else list(phenotypes.columns))
    derive = derive_donor and cfg.group_key not in available
    if sample_column not in columns:
        raise UserError(
            f"{path}: expression.sample_column '{sample_column}' is not a column of the labels table "
            f"(have: {columns[:20]}{' ...' if len(columns) > 20 else ''})"
        )
    for key, name in (("label_key", cfg.label_key), ("group_key", None if derive else cfg.group_key)):
        if name is not None and name not in available:
            where = "the labels table" + ("" if phenotypes is None else f" or of {cfg.phenotypes}")
            raise UserError(
                f"{path}: expression.{key} '{name}' is not a column of {where} "
                f"(have: {available[:20]}{' ...' if len(available) > 20 else ''})"
            )
    wanted = list(
        dict.fromkeys(
            c for c in (sample_column, cfg.label_key, None if derive else cfg.group_key, *extra) if c in columns
        )
    )
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
    if cfg.group_key == sample_column:  # e.g. TCGA patients: the row id is also the group
        table[cfg.group_key] = table.index
    _check_unique(table.index, f"sample ids (column '{sample_column}')", path)
    if phenotypes is not None:
        donors = [gtex_donor(s) for s in table.index]
        for key in (cfg.label_key, cfg.group_key):
            if key is not None and key not in table and key in phenotypes:
                values = phenotypes[key].reindex(donors)
                if key == "SEX":  # GTEx's data dictionary: 1 = male, 2 = female
                    values = values.replace({"1": "male", "2": "female"})
                table[key] = values.to_numpy()
    if derive:
        table[cfg.group_key] = [gtex_donor(s) for s in table.index]
        log.info(
            "%s: no '%s' column; donors derived from the sample ids (GTEX-1117F-0226-... -> GTEX-1117F)",
            path,
            cfg.group_key,
        )
    return table


def is_xlsx(path) -> bool:
    """True for an Excel workbook (.xlsx: a zip archive), whatever its name."""
    with reading(path, "the file"), open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _read_excel(path, label_key: str) -> pd.DataFrame:
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


def _read_phenotypes(path) -> pd.DataFrame:
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
    _check_unique(table.index, "subject ids (SUBJID)", path)
    return table


def _join_labels(samples: list[str], labels: pd.DataFrame, path, labels_path, keys=None) -> pd.DataFrame:
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


def _assemble(X: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame):
    """X (samples x genes) with its obs and var tables -> AnnData."""
    import anndata as ad

    return ad.AnnData(X=X, obs=obs, var=var)


# ---------------------------------------------------------------------------------------------------- checks


def _check_unique(ids, what: str, path) -> None:
    index = pd.Index(ids)
    if not index.is_unique:
        dups = index[index.duplicated()]
        raise UserError(f"{path}: duplicate {what}, e.g. {dups[0]!r} ({len(dups)} repeated); each id must be unique")


def _check_obs(adata, cfg: Expression, source) -> None:
    """obs[label_key] -> obs['label'] (str), obs[group_key] -> obs['group'] (str); ``source`` is their file."""
    if cfg.label_key not in adata.obs:
        raise UserError(
            f"{source}: expression.label_key '{cfg.label_key}' is not an obs column (have: {list(adata.obs.columns)})"
        )
    labels = adata.obs[cfg.label_key]
    if labels.isna().any():
        raise UserError(
            f"{source}: '{cfg.label_key}' has {int(labels.isna().sum())} missing labels "
            f"(e.g. sample {labels.index[labels.isna()][0]!r}); drop or fill them"
        )
    adata.obs["label"] = labels.astype(str).values
    if cfg.group_key is not None:
        if cfg.group_key not in adata.obs:
            raise UserError(
                f"{source}: expression.group_key '{cfg.group_key}' is not an obs column "
                f"(have: {list(adata.obs.columns)})"
            )
        adata.obs["group"] = adata.obs[cfg.group_key].astype(str).values
    _check_unique(adata.obs_names, "sample ids (obs names)", cfg.path)
    _check_unique(adata.var_names, "gene ids (var names)", cfg.path)


def _check_values(X, row_ids, col_ids, path, negatives_ok: bool, axes=("sample", "gene"), missing_ok=False) -> None:
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
            f"values, e.g. {_cell(X, finite, False, row_ids, col_ids, axes)}; clean them before running"
            f"{'' if missing_ok else ', or set expression.missing: drop_genes to leave such genes out'}"
        )
    if not negatives_ok and (data < 0).any():
        raise UserError(
            f"{path}: negative values in a matrix of counts, e.g. "
            f"{_cell(X, lambda v: v < 0, True, row_ids, col_ids, axes)}; if the data are already "
            "normalised declare expression.scale: normalized"
        )


def _cell(X, test, expected: bool, row_ids, col_ids, axes) -> str:
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


# ---------------------------------------------------------------------------------------------------- gene filter


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
