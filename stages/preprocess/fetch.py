"""python -m stages.preprocess.fetch DATASET: download the public files of a named dataset into ``data/``.

Usage::

    python -m stages.preprocess.fetch --list                     # the datasets this module knows
    python -m stages.preprocess.fetch gtex-v8 --list             # a dataset's files, URLs and checksums
    python -m stages.preprocess.fetch gtex-v8                    # all its files -> data/gtex-v8/
    python -m stages.preprocess.fetch gtex-v8 --only lung whole_blood sample-attributes
    python -m stages.preprocess.fetch gse85217 --dest /mnt/volume/data
    python -m stages.preprocess.fetch gtex-v8 --list --sizes     # with each file's size as the server announces it
    python -m stages.preprocess.fetch --manifest gdc_manifest.txt  # the GDC cart's files -> data/gdc/<id>/<name>

Files land in ``<dest>/<dataset>/<path>``. Everything here is standard library (urllib) plus tqdm.

Resuming
    A file is downloaded into ``<final>.part``. When a ``.part`` exists, the rest is requested with
    ``Range: bytes=N-`` and appended if the server answers 206; a server that answers 200 (Range ignored) restarts
    the file cleanly from byte 0. Only after the last byte and a good checksum is the ``.part`` renamed (atomically,
    ``os.replace``) to its final name, so a final file is always complete. A network error (refused, reset, timed
    out, 5xx) keeps the ``.part``: run the same command again and it resumes.

Checksums (trust on first use)
    Where the source publishes a checksum, the registry entry carries it (``md5`` or ``sha256``) and every
    download and every present file is checked against it. None of the sources below publishes one, and none is
    invented here: instead the first successful download records the file's sha256 in ``<dest>/<dataset>/SHA256SUMS``
    (the ``sha256sum`` format: ``<hex>  <path>``; ``cd data/gtex-v8 && sha256sum -c SHA256SUMS`` checks it), and
    every later run verifies the present file, or a new download, against that record. A mismatch deletes the
    ``.part`` and stops with a one-line error naming the file; if the source really did change, delete the file's
    line from SHA256SUMS and fetch again. A file that is already present with a good checksum is skipped without
    any request. A present file with no checksum known anywhere (SHA256SUMS deleted, file copied in by hand) is
    trusted as it is and its sha256 is recorded.

Errors
    HTTP 404/5xx, refused or lost connections, an unknown dataset or ``--only`` name, and checksum mismatches are
    ``shared.errors.UserError``: one line on stderr naming the file or URL and what to do, exit code 2.

Overriding where files come from (tests, mirrors)
    Two ways, both supported:

    - ``main(argv, registry=...)`` and ``fetch_dataset(name, dest, registry=...)`` take a registry (same shape as
      ``REGISTRY``) instead of the built-in one; ``fetch_file`` takes one file entry and its URL explicitly.
    - The environment variable ``ONCOXAI_FETCH_MIRROR`` (e.g. ``http://127.0.0.1:8000`` or
      ``https://mirror.example.org/prefix``) replaces the scheme and host of every URL; the URL's path (and query)
      is kept and appended to the mirror's own path. The tests use both.

The registry
    ``REGISTRY`` maps a dataset name to a dict::

        {
            "description": str,          # one line, shown by --list
            "homepage": str,             # where a person can check the files by hand
            "verified": bool,            # False: URLs not confirmed; the CLI prints a warning before downloading
            "notes": str,                # optional: what the files hold, what is *not* in them
            "files": [
                {
                    "name": str,         # short name for --only (unique in the dataset)
                    "url": str,
                    "path": str,         # destination, relative to <dest>/<dataset>/ (no "..", not absolute)
                    "sha256": str,       # optional, only where the source publishes it
                    "md5": str,          # optional, only where the source publishes it
                    "size": int,         # optional, bytes, only where the source publishes it (checked)
                    "optional": bool,    # optional: fetched only when named with --only
                },
            ],
        }

    ``--only`` accepts a file's ``name`` or the file name of its ``path``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any

from shared.errors import UserError
from shared.logs import get_logger, setup_logging

log = get_logger("stages.preprocess.fetch")

MIRROR_ENV = "ONCOXAI_FETCH_MIRROR"
SUMS_FILE = "SHA256SUMS"
CHUNK = 1 << 20
USER_AGENT = "oncoxai-fetch/0.1 (+python-urllib)"

# ---------------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------------

# GTEx v8: the 54 tissues as named in the sample-attribute table (SMTSD) and the slug in their file names
# (lower case, parentheses dropped, " - " and spaces -> "_"; hyphens kept, e.g. "c-1", "ebv-transformed").
GTEX_V8_TISSUES: tuple[tuple[str, str], ...] = (
    ("Adipose - Subcutaneous", "adipose_subcutaneous"),
    ("Adipose - Visceral (Omentum)", "adipose_visceral_omentum"),
    ("Adrenal Gland", "adrenal_gland"),
    ("Artery - Aorta", "artery_aorta"),
    ("Artery - Coronary", "artery_coronary"),
    ("Artery - Tibial", "artery_tibial"),
    ("Bladder", "bladder"),
    ("Brain - Amygdala", "brain_amygdala"),
    ("Brain - Anterior cingulate cortex (BA24)", "brain_anterior_cingulate_cortex_ba24"),
    ("Brain - Caudate (basal ganglia)", "brain_caudate_basal_ganglia"),
    ("Brain - Cerebellar Hemisphere", "brain_cerebellar_hemisphere"),
    ("Brain - Cerebellum", "brain_cerebellum"),
    ("Brain - Cortex", "brain_cortex"),
    ("Brain - Frontal Cortex (BA9)", "brain_frontal_cortex_ba9"),
    ("Brain - Hippocampus", "brain_hippocampus"),
    ("Brain - Hypothalamus", "brain_hypothalamus"),
    ("Brain - Nucleus accumbens (basal ganglia)", "brain_nucleus_accumbens_basal_ganglia"),
    ("Brain - Putamen (basal ganglia)", "brain_putamen_basal_ganglia"),
    ("Brain - Spinal cord (cervical c-1)", "brain_spinal_cord_cervical_c-1"),
    ("Brain - Substantia nigra", "brain_substantia_nigra"),
    ("Breast - Mammary Tissue", "breast_mammary_tissue"),
    ("Cells - Cultured fibroblasts", "cells_cultured_fibroblasts"),
    ("Cells - EBV-transformed lymphocytes", "cells_ebv-transformed_lymphocytes"),
    ("Cervix - Ectocervix", "cervix_ectocervix"),
    ("Cervix - Endocervix", "cervix_endocervix"),
    ("Colon - Sigmoid", "colon_sigmoid"),
    ("Colon - Transverse", "colon_transverse"),
    ("Esophagus - Gastroesophageal Junction", "esophagus_gastroesophageal_junction"),
    ("Esophagus - Mucosa", "esophagus_mucosa"),
    ("Esophagus - Muscularis", "esophagus_muscularis"),
    ("Fallopian Tube", "fallopian_tube"),
    ("Heart - Atrial Appendage", "heart_atrial_appendage"),
    ("Heart - Left Ventricle", "heart_left_ventricle"),
    ("Kidney - Cortex", "kidney_cortex"),
    ("Kidney - Medulla", "kidney_medulla"),
    ("Liver", "liver"),
    ("Lung", "lung"),
    ("Minor Salivary Gland", "minor_salivary_gland"),
    ("Muscle - Skeletal", "muscle_skeletal"),
    ("Nerve - Tibial", "nerve_tibial"),
    ("Ovary", "ovary"),
    ("Pancreas", "pancreas"),
    ("Pituitary", "pituitary"),
    ("Prostate", "prostate"),
    ("Skin - Not Sun Exposed (Suprapubic)", "skin_not_sun_exposed_suprapubic"),
    ("Skin - Sun Exposed (Lower leg)", "skin_sun_exposed_lower_leg"),
    ("Small Intestine - Terminal Ileum", "small_intestine_terminal_ileum"),
    ("Spleen", "spleen"),
    ("Stomach", "stomach"),
    ("Testis", "testis"),
    ("Thyroid", "thyroid"),
    ("Uterus", "uterus"),
    ("Vagina", "vagina"),
    ("Whole Blood", "whole_blood"),
)

_GTEX = "https://storage.googleapis.com/adult-gtex"
_GEO = "https://ftp.ncbi.nlm.nih.gov/geo"
_GDC = "https://api.gdc.cancer.gov"


def gtex_slug(tissue: str) -> str:
    """The file-name slug of a GTEx tissue (SMTSD) name: 'Brain - Cortex' -> 'brain_cortex'."""
    return re.sub(r"[()]", "", tissue).replace(" - ", "_").replace(" ", "_").lower()


def _gtex_v8_files() -> list[dict[str, Any]]:
    files = []
    for _, slug in GTEX_V8_TISSUES:
        fname = f"gene_reads_2017-06-05_v8_{slug}.gct.gz"
        files.append({"name": slug, "url": f"{_GTEX}/bulk-gex/v8/rna-seq/counts-by-tissue/{fname}", "path": fname})
    for name, fname in (
        ("sample-attributes", "GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt"),
        ("subject-phenotypes", "GTEx_Analysis_v8_Annotations_SubjectPhenotypesDS.txt"),
    ):
        files.append({"name": name, "url": f"{_GTEX}/annotations/v8/metadata-files/{fname}", "path": fname})
    fname = "GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.gct.gz"
    files.append(
        {"name": "all-tissues", "url": f"{_GTEX}/bulk-gex/v8/rna-seq/{fname}", "path": fname, "optional": True}
    )
    return files


REGISTRY: dict[str, dict[str, Any]] = {
    "gtex-v8": {
        "description": "GTEx v8 gene read counts (RNA-SeQC), one GCT per tissue (54), plus the sample-attribute table",
        "homepage": "https://gtexportal.org/home/downloads/adult-gtex/bulk_tissue_expression",
        "verified": True,
        "notes": "Counts are raw reads per gene (GENCODE v26 ids); SMTSD in the sample attributes is the tissue label; "
        "the subject phenotypes hold SEX, AGE (decades) and DTHHRDY. 'all-tissues' (the same counts as one "
        "matrix, without the per-tissue files' id column) is fetched only when named with --only.",
        "files": _gtex_v8_files(),
    },
    "gse85217": {
        "description": "GEO GSE85217 (Cavalli et al. 2017): 763 medulloblastomas, Affymetrix HuGene 1.1 ST expression",
        "homepage": "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE85217",
        "verified": True,
        "notes": "The supplementary matrix holds the expression values (genes x 763 samples); the series matrix holds "
        "the per-sample characteristics, including the subgroup (WNT, SHH, Group3, Group4) and subtype.",
        "files": [
            {
                "name": "expression",
                "url": f"{_GEO}/series/GSE85nnn/GSE85217/suppl/GSE85217_M_exp_763_MB_SubtypeStudy_TaylorLab.txt.gz",
                "path": "GSE85217_M_exp_763_MB_SubtypeStudy_TaylorLab.txt.gz",
            },
            {
                "name": "series-matrix",
                "url": f"{_GEO}/series/GSE85nnn/GSE85217/matrix/GSE85217_series_matrix.txt.gz",
                "path": "GSE85217_series_matrix.txt.gz",
            },
        ],
    },
    "gbm-smartseq2": {
        "description": "GEO GSE131928 / GSM3828672 (Neftel et al. 2019): IDH-wt glioblastoma Smart-seq2 cells, TPM",
        "homepage": "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSM3828672",
        "verified": True,
        "notes": "Genes x cells of processed TPM values, and the series' table of each cell's tumour and "
        "adult/paediatric origin. The malignant cell-state labels (MES/AC/OPC/NPC-like) are not on GEO: they are "
        "on the Broad Single Cell Portal (SCP393), which needs a login, so they are not fetched here.",
        "files": [
            {
                "name": "smartseq2-tpm",
                "url": f"{_GEO}/samples/GSM3828nnn/GSM3828672/suppl/"
                "GSM3828672_Smartseq2_GBM_IDHwt_processed_TPM.tsv.gz",
                "path": "GSM3828672_Smartseq2_GBM_IDHwt_processed_TPM.tsv.gz",
            },
            {
                "name": "cell-metadata",
                "url": f"{_GEO}/series/GSE131nnn/GSE131928/suppl/"
                "GSE131928_single_cells_tumor_name_and_adult_or_peidatric.xlsx",
                "path": "GSE131928_single_cells_tumor_name_and_adult_or_peidatric.xlsx",
            },
        ],
    },
    "tcga-pancan": {
        "description": "TCGA PanCanAtlas: the batch-corrected RNA-seq matrix (EBPlusPlus, 20,531 genes x 11,069 "
        "samples) and the TCGA-CDR clinical table (cancer type per patient)",
        "homepage": "https://gdc.cancer.gov/about-data/publications/pancanatlas",
        "verified": True,
        "notes": "The matrix is genes (SYMBOL|Entrez) x aliquot barcodes with NA for some genes (configs/tcga.yaml "
        "sets missing: drop_genes); TCGA-CDR-SupplementalTableS1.xlsx gives 'type' per bcr_patient_barcode. "
        "Per-sample STAR counts of current GDC releases: make fetch DATASET=gdc MANIFEST=gdc_manifest.txt.",
        "files": [
            {
                "name": "pancan-matrix",
                "url": f"{_GDC}/data/3586c0da-64d0-4b74-a449-5ff4d9136611",
                "path": "EBPlusPlusAdjustPANCAN_IlluminaHiSeq_RNASeqV2.geneExp.tsv",
                "md5": "02e72c33071307ff6570621480d3c90b",  # md5 and size as GDC's PanCanAtlas manifest lists them
                "size": 1882540959,
            },
            {
                "name": "clinical-cdr",
                "url": f"{_GDC}/data/1b5f413e-a8d1-4d10-92eb-7c4ae739ed81",
                "path": "TCGA-CDR-SupplementalTableS1.xlsx",
                "md5": "a4591b2dcee39591f59e5e25a6ce75fa",
                "size": 2945129,
            },
        ],
    },
}

GDC_MANIFEST_COLUMNS = ["id", "filename", "md5", "size"]


def gdc_manifest_dataset(path: str | Path) -> dict[str, Any]:
    """A registry dataset from a GDC manifest (the portal cart's ``gdc_manifest.<date>.txt``: tab separated, columns
    ``id filename md5 size state``): each file from the GDC data endpoint into ``<id>/<filename>`` (gdc-client's
    layout), with its published md5 and size."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the GDC manifest ({exc.strerror or exc})") from None
    header = lines[0].split("\t") if lines else []
    if header[:4] != GDC_MANIFEST_COLUMNS:
        raise UserError(
            f"{path}: not a GDC manifest (header {header[:5]}, expected {GDC_MANIFEST_COLUMNS + ['state']}); "
            "download it from the GDC portal's cart (Download Cart > Manifest)"
        )
    files = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 4 or not cells[3].isdigit():
            raise UserError(f"{path}:{n}: expected id, filename, md5, size (tab separated), got {cells[:4]}")
        file_id, name, md5, size = cells[:4]
        files.append(
            {
                "name": file_id,
                "url": f"{_GDC}/data/{file_id}",
                "path": f"{file_id}/{name}",
                "md5": md5.lower(),
                "size": int(size),
            }
        )
    if not files:
        raise UserError(f"{path}: the GDC manifest lists no files")
    return {
        "description": f"GDC files listed by {path.name}",
        "homepage": "https://portal.gdc.cancer.gov/",
        "verified": True,
        "files": files,
    }


_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}


def check_registry(registry: dict[str, dict[str, Any]]) -> None:
    """Validate a registry's shape; a malformed one is a ``UserError`` naming the dataset and file."""
    for name, ds in registry.items():
        files = ds.get("files")
        if not isinstance(files, list) or not files:
            raise UserError(f"registry: dataset '{name}' has no 'files' list")
        seen_names, seen_paths = set(), set()
        for i, f in enumerate(files):
            where = f"registry: dataset '{name}', file {f.get('name', i)!r}"
            for key in ("name", "url", "path"):
                if not isinstance(f.get(key), str) or not f[key]:
                    raise UserError(f"{where}: missing '{key}'")
            if urllib.parse.urlsplit(f["url"]).scheme not in ("http", "https"):
                raise UserError(f"{where}: url must be http(s): {f['url']}")
            path = PurePosixPath(f["path"])
            if path.is_absolute() or ".." in path.parts or f["path"].endswith("/") or path.name == SUMS_FILE:
                raise UserError(f"{where}: path must be a relative file path inside the dataset folder: {f['path']}")
            if f.get("size") is not None and (not isinstance(f["size"], int) or f["size"] < 0):
                raise UserError(f"{where}: 'size' must be a number of bytes")
            for algo, pattern in _HEX.items():
                if f.get(algo) is not None and not pattern.match(str(f[algo])):
                    raise UserError(f"{where}: '{algo}' is not a lower-case hex {algo} digest")
            if f["name"] in seen_names or str(path) in seen_paths:
                raise UserError(f"{where}: duplicate name or path")
            seen_names.add(f["name"])
            seen_paths.add(str(path))


# ---------------------------------------------------------------------------------------------------------------
# URLs, checksums, the SHA256SUMS record
# ---------------------------------------------------------------------------------------------------------------


def resolve_url(url: str, mirror: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (default: ``$ONCOXAI_FETCH_MIRROR``, if set)."""
    mirror = os.environ.get(MIRROR_ENV) if mirror is None else mirror
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise UserError(f"{MIRROR_ENV}={mirror!r}: expected a URL such as http://127.0.0.1:8000")
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


class Sums:
    """``<dest>/<dataset>/SHA256SUMS``: the sha256 of every file fetched so far (trust on first use)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, str] = {}
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
                if not m:
                    raise UserError(f"{path}:{n}: not a sha256sum line ('<64 hex>  <path>'); fix or delete the line")
                self.entries[m.group(2)] = m.group(1).lower()

    def get(self, rel: str) -> str | None:
        return self.entries.get(rel)

    def record(self, rel: str, sha256: str) -> None:
        if self.entries.get(rel) == sha256:
            return
        self.entries[rel] = sha256
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.entries.items()))
        _write_text_atomic(self.path, text)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def expected_digests(entry: dict[str, Any], recorded: str | None) -> dict[str, str]:
    """Every checksum known for a file: the registry's (published) and the one recorded on first download."""
    want = {algo: str(entry[algo]).lower() for algo in ("sha256", "md5") if entry.get(algo)}
    if recorded:
        if "sha256" in want and want["sha256"] != recorded:
            log.warning("%s: SHA256SUMS disagrees with the published sha256; the published one wins", entry["path"])
        else:
            want["sha256"] = recorded
    return want


def file_digests(path: Path, algos: Iterable[str] = ("sha256",)) -> dict[str, str]:
    hashers = {algo: hashlib.new(algo) for algo in set(algos) | {"sha256"}}
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def _mismatches(want: dict[str, str], got: dict[str, str]) -> list[str]:
    return [f"{algo} expected {want[algo]}, got {got[algo]}" for algo in sorted(want) if want[algo] != got[algo]]


# ---------------------------------------------------------------------------------------------------------------
# Downloading one file
# ---------------------------------------------------------------------------------------------------------------


def _progress_bar(desc: str, total: int | None, initial: int):
    """A byte-counting tqdm bar on stderr; off in logs and CI like shared.logs.progress
    (ONCOXAI_PROGRESS=1 forces it)."""
    from tqdm.auto import tqdm

    forced = os.environ.get("ONCOXAI_PROGRESS")
    disable = None if forced is None else forced == "0"
    return tqdm(
        desc=desc,
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=disable,
        leave=False,
        file=sys.stderr,
    )


def _http_error(url: str, rel: str, exc: urllib.error.HTTPError, part: Path) -> UserError:
    code = exc.code
    if code in (401, 403, 404, 410):
        advice = (
            "the file is not there (moved or renamed?): check its URL in the registry in "
            f"stages/preprocess/fetch.py against the dataset's homepage, or set {MIRROR_ENV}"
        )
    elif code == 429 or code >= 500:
        advice = "the server is failing or rate-limiting: wait and run the same command again (it resumes)"
    else:
        advice = "unexpected HTTP answer: check the URL and your proxy settings, then run again"
    kept = f"; the partial download {part} is kept" if part.exists() else ""
    return UserError(f"{url}: HTTP {code} {exc.reason} while fetching {rel}: {advice}{kept}")


def _network_error(url: str, rel: str, reason: object, part: Path) -> UserError:
    have = part.stat().st_size if part.exists() else 0
    kept = f"; {have} bytes are kept in {part} and the next run resumes from there" if have else ""
    return UserError(
        f"{url}: network error while fetching {rel} ({reason}): check the connection (or proxy, "
        f"or {MIRROR_ENV}) and run the same command again{kept}"
    )


class _Writer:
    """The .part file; a local write failure (disk full, permissions) is a UserError, not a 'network error'."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        try:
            self.fh = open(path, mode)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> UserError:
        return UserError(
            f"{self.path}: cannot write ({exc.strerror or exc}): free disk space or fix the folder's "
            f"permissions (or choose another --dest), then run again"
        )

    def write(self, block: bytes) -> None:
        try:
            self.fh.write(block)
        except OSError as exc:
            raise self._error(exc) from None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as err:
            if exc_type is None:
                raise self._error(err) from None
        finally:
            self.fh.close()
        return False


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def fetch_file(entry: dict[str, Any], folder: Path, sums: Sums, url: str | None = None, timeout: float = 60.0) -> str:
    """Fetch one registry file entry into ``folder / entry['path']``; returns 'skipped' or 'downloaded'.

    ``url`` defaults to the entry's URL passed through ``resolve_url`` (the mirror, if any).
    """
    rel = entry["path"]
    final = folder / rel
    part = final.with_name(final.name + ".part")
    url = url or resolve_url(entry["url"])
    want = expected_digests(entry, sums.get(rel))

    if final.is_file():
        got = file_digests(final, want)
        bad = _mismatches(want, got)
        if not bad:
            if not want:
                log.info("%s: present, no checksum known; recording its sha256 (trust on first use)", rel)
            sums.record(rel, got["sha256"])
            log.info("%s: present and verified, skipped", rel)
            return "skipped"
        log.warning("%s: present but its checksum is wrong (%s); downloading it again", rel, "; ".join(bad))
        final.unlink()

    final.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            exc.close()
            # Range not satisfiable: the .part is already complete (verified below) or longer than the file.
            total = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == offset:
                resp = None
            else:
                log.warning("%s: the server cannot resume from byte %d; restarting from zero", rel, offset)
                part.unlink()
                offset = 0
                resp = _open(url, 0, timeout)
        if resp is not None:
            with resp:
                mode = "ab"
                if offset and resp.status == 206:
                    start = _content_range_start(resp.headers.get("Content-Range"))
                    if start != offset:
                        raise UserError(
                            f"{url}: the server resumed {rel} at byte {start}, not {offset}: delete "
                            f"{part} and run again"
                        )
                    log.info("%s: resuming at byte %d", rel, offset)
                elif resp.status in (200, 206):
                    if offset:
                        log.info("%s: the server ignored the Range request; restarting from zero", rel)
                    offset, mode = 0, "wb"
                else:
                    raise UserError(f"{url}: unexpected HTTP {resp.status} while fetching {rel}: run again")
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                received = 0
                with (
                    _Writer(part, mode) as out,
                    _progress_bar(Path(rel).name, None if length is None else offset + length, offset) as bar,
                ):
                    while block := resp.read(CHUNK):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
                if length is not None and received < length:
                    raise _network_error(url, rel, f"connection closed after {received} of {length} bytes", part)
    except urllib.error.HTTPError as exc:
        raise _http_error(url, rel, exc, part) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:  # refused, reset, timed out, truncated
        reason = getattr(exc, "reason", None) or exc.__class__.__name__ + (f": {exc}" if str(exc) else "")
        raise _network_error(url, rel, reason, part) from None

    if entry.get("size") is not None and part.stat().st_size != entry["size"]:
        have = part.stat().st_size
        if have < entry["size"]:
            raise _network_error(url, rel, f"the server sent {have} of the {entry['size']} published bytes", part)
        part.unlink()
        raise UserError(
            f"{rel}: {have} bytes downloaded from {url}, but {entry['size']} published: the download was "
            "deleted; run again, and if it repeats the source changed"
        )
    got = file_digests(part, want)
    bad = _mismatches(want, got)
    if bad:
        part.unlink()
        source = "published checksum" if any(entry.get(a) for a in ("sha256", "md5")) else f"{sums.path.name} record"
        raise UserError(
            f"{rel}: checksum mismatch against the {source} ({'; '.join(bad)}), downloaded from {url}: "
            f"the download was deleted; run again, and if it repeats the source changed (check it, then "
            f"delete the line for {rel} in {sums.path})"
        )
    os.replace(part, final)
    if not want:
        log.info(
            "%s: no published checksum; recorded sha256 %s in %s (trust on first use)", rel, got["sha256"], sums.path
        )
    sums.record(rel, got["sha256"])
    log.info("%s: downloaded (%d bytes)", rel, final.stat().st_size)
    return "downloaded"


# ---------------------------------------------------------------------------------------------------------------
# A dataset, the CLI
# ---------------------------------------------------------------------------------------------------------------


def get_dataset(name: str, registry: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UserError(
            f"unknown dataset '{name}' (known: {', '.join(sorted(registry))}; python -m stages.preprocess.fetch --list)"
        )
    return registry[name]


def select_files(name: str, dataset: dict[str, Any], only: Iterable[str] | None) -> list[dict[str, Any]]:
    files = dataset["files"]
    if not only:
        return [f for f in files if not f.get("optional")]
    chosen = []
    for want in only:
        match = [f for f in files if want in (f["name"], PurePosixPath(f["path"]).name)]
        if not match:
            raise UserError(
                f"dataset '{name}' has no file '{want}' (its names: python -m stages.preprocess.fetch {name} --list)"
            )
        chosen.extend(f for f in match if f not in chosen)
    return chosen


class _Lock:
    """One fetch per dataset folder at a time (two writers would interleave bytes in the same .part)."""

    def __init__(self, folder: Path):
        self.path = folder / ".fetch.lock"
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise UserError(
                f"{self.path.parent}: another fetch is writing this dataset; wait for it to finish"
            ) from None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()
        return False


def fetch_dataset(
    name: str,
    dest: str | Path = "data",
    registry: dict[str, dict[str, Any]] | None = None,
    only: Iterable[str] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch (the ``only`` files of) a dataset into ``<dest>/<name>/``; returns the final paths."""
    dataset = get_dataset(name, registry)
    check_registry({name: dataset})
    files = select_files(name, dataset, only)
    if not dataset.get("verified", False):
        log.warning(
            "%s: the URLs of this dataset are NOT verified; if a download fails with HTTP 404, look the "
            "files up at %s and correct the registry in stages/preprocess/fetch.py",
            name,
            dataset.get("homepage", "the dataset's homepage"),
        )
    folder = Path(dest) / name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = {"downloaded": 0, "skipped": 0}
    with _Lock(folder):
        sums = Sums(folder / SUMS_FILE)
        for i, entry in enumerate(files, 1):
            log.info("[%d/%d] %s <- %s", i, len(files), entry["path"], resolve_url(entry["url"]))
            done[fetch_file(entry, folder, sums, timeout=timeout)] += 1
    log.info(
        "%s: %d downloaded, %d already present, in %.1f s -> %s",
        name,
        done["downloaded"],
        done["skipped"],
        time.time() - t0,
        folder,
    )
    return [folder / f["path"] for f in files]


def _size_text(n: int | None) -> str:
    if n is None:
        return "size ?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


def server_size(url: str, timeout: float = 30.0) -> int | None:
    """The Content-Length the server announces for ``url`` (a HEAD request), or None when it gives none."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        raise UserError(f"{url}: HTTP {exc.code} ({exc.reason}) when asking for its size; check the URL") from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise UserError(
            f"{url}: cannot ask for its size ({getattr(exc, 'reason', exc)}); check the connection"
        ) from None
    return int(length) if length and length.isdigit() else None


def _list(name: str | None, registry: dict[str, dict[str, Any]], dest: str, ask_sizes: bool = False) -> None:
    if name is None:
        for key in sorted(registry):
            ds = registry[key]
            flag = "" if ds.get("verified", False) else "  [URLs not verified]"
            print(f"{key:16s} {len(ds['files']):3d} files  {ds.get('description', '')}{flag}")
        return
    ds = get_dataset(name, registry)
    sums = Sums(Path(dest) / name / SUMS_FILE)
    print(f"{name}: {ds.get('description', '')}")
    if ds.get("homepage"):
        print(f"homepage: {ds['homepage']}")
    if ds.get("notes"):
        print(f"notes: {ds['notes']}")
    if not ds.get("verified", False):
        print("warning: the URLs of this dataset are not verified")
    total = 0
    for f in ds["files"]:
        size = f.get("size")
        if size is None and ask_sizes:
            size = server_size(resolve_url(f["url"]))
        total += size or 0
        if f.get("sha256") or f.get("md5"):
            check = "published " + ("sha256" if f.get("sha256") else "md5")
        elif sums.get(f["path"]):
            check = f"recorded sha256 {sums.get(f['path'])[:12]}..."
        else:
            check = "sha256 recorded on first download"
        flags = ", only with --only" if f.get("optional") else ""
        print(f"  {f['name']:40s} {_size_text(size):>9s}  {resolve_url(f['url'])}  [{check}{flags}]")
    if ask_sizes or any(f.get("size") for f in ds["files"]):
        print(f"total: {_size_text(total)} (sizes as {'published' if not ask_sizes else 'the server announces them'})")
    else:
        print("sizes: add --sizes to ask the server for each file's size")


def main(argv: list[str] | None = None, registry: dict[str, dict[str, Any]] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.preprocess.fetch",
        description="Download the public files of a named dataset into <dest>/<dataset>/ (resumable, checksummed).",
        epilog=f"Set {MIRROR_ENV}=http://host:port to fetch every URL from a mirror. Exit code 2 on errors.",
    )
    parser.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    parser.add_argument("--dest", default="data", help="data root; files go to <dest>/<dataset>/ (default: data)")
    parser.add_argument("--list", action="store_true", help="list the datasets, or the files of DATASET, and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these files (names from --list)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up (60)")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="with --list DATASET: ask the server for sizes not published in the registry (one HEAD request a file)",
    )
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        help="a GDC portal manifest (id, filename, md5, size, state): "
        "fetch the files it lists as dataset DATASET (default: gdc), into <id>/<filename>",
    )
    args = parser.parse_args(argv)
    registry = REGISTRY if registry is None else registry
    if args.manifest:
        args.dataset = args.dataset or "gdc"
        try:
            registry = {**registry, args.dataset: gdc_manifest_dataset(args.manifest)}
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not args.list and not args.dataset:
        parser.error("a DATASET is required (or --list)")
    setup_logging()
    try:
        if args.list:
            _list(args.dataset, registry, args.dest, args.sizes)
            return 0
        fetch_dataset(args.dataset, args.dest, registry, args.only, args.timeout)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
