"""Readers that turn an input file into an AnnData with the label (and group) columns checked.

Every reader returns samples x genes: X numeric (float32 for the table formats; what the file holds for .h5ad),
obs_names the unique sample ids, var_names the unique gene ids, ``var['symbol']`` where the format carries
symbols, and obs holding the label (and group, and covariate) columns of its label source (the loaders look up
``Expression.metadata_keys``). ``read_expression`` then adds ``obs['label']`` and ``obs['group']`` as strings and
each covariate as ``obs['covariate:<name>']`` (text, '' where missing). A bad input stops with a one-line
``UserError`` naming the file; nothing half-read is returned.

Table files (csv/tsv/gct/tcga matrices and label tables) may be plain text or gzip, recognised by their content.

One module per format, each with a ``read(expression)`` (``READERS``, by ``expression.format``); what they share is in
tables.py. Where each published layout was confirmed (none of the real files could be downloaded here; each fixture
follows the evidence, tests/e2e/test_public_formats.py and fixtures/public.py):
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
- GDC STAR counts and sample sheets: the GDC documentation named in gdc.py.
"""

from __future__ import annotations

import numpy as np

from shared.errors import UserError
from shared.logs import get_logger

from ..params import Expression
from . import gdc, geo, gtex, h5ad, tcga, text
from .gtex import gtex_tissue_name
from .tables import check_obs

log = get_logger(__name__)


#: expression.format -> its reader (the config schema admits exactly these names)
READERS = {
    "h5ad": h5ad.read,
    "csv": text.read,
    "tsv": text.read,
    "gct": gtex.read,
    "tcga": tcga.read,
    "geo": geo.read,
    "gdc": gdc.read,
}


def read_expression(expression: Expression):
    """Return an in-memory AnnData (samples x genes) with ``obs['label']`` (str), optional ``obs['group']`` (str) and
    ``obs['covariate:<name>']`` per covariate (``check_obs``)."""
    adata = READERS[expression.format](expression)
    source = {"h5ad": expression.path, "gdc": expression.path, "geo": expression.labels or expression.path}.get(
        expression.format, expression.labels
    )
    check_obs(adata, expression, source=source)
    if expression.format == "gct" and expression.label_key in ("SMTSD", "SMTS"):
        adata.obs["label"] = [gtex_tissue_name(t) for t in adata.obs["label"]]
    if expression.missing == "drop_genes":
        adata = drop_missing_genes(adata, expression.path)
    return adata


def drop_missing_genes(adata, path):
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
