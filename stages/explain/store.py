"""Explanations of any number of samples in bounded memory: inputs read a chunk of rows at a time, per-sample results
written as they come (``.npy`` rows appended after a declared header, CSV rows appended, AnnData layers filled in
place), class means accumulated, and the few rows the trust checks and figures need kept aside; and
attributions.h5ad assembled for scanpy (``open_anndata``, ``finish_anndata``).

Every file is written under a temporary name and renamed into place when complete, so an interrupted run leaves
nothing half-written under a declared name. Files are read and written with plain reads and writes (not memory
maps), so what has been read or written does not stay in the process's resident memory.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shared.logs import get_logger

if TYPE_CHECKING:
    from .inputs import ModelInputs
    from .params import Explain

log = get_logger(__name__)


class LazyRows:
    """Some rows of an ``.npy`` file, read only when indexed: ``view[k]`` is ``array[rows[k]]`` as an array in memory,
    read with plain file reads (one per run of consecutive rows), so a chunk costs its own size whatever the number
    of rows, and rows read once do not stay in the process's memory (as a memory map's pages would)."""

    def __init__(self, path: Path, rows: np.ndarray | None = None):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(fh)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(fh)
            )
            self.offset = fh.tell()
        if fortran and len(shape) > 1:
            raise ValueError(f"{self.path}: a Fortran-ordered array; save it in C order")
        self.file_shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.rows = np.arange(shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.asarray([key])][0]
        rows = self.rows[key]
        out = np.empty((len(rows), *self.file_shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        buf = out.reshape(len(rows), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        with open(self.path, "rb", buffering=0) as fh:
            for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=False):
                fh.seek(self.offset + int(rows[lo]) * self.row_bytes)
                view = memoryview(buf[lo:hi].reshape(-1))
                while len(view):
                    got = fh.readinto(view)
                    if not got:
                        raise ValueError(f"{self.path}: ends before row {rows[hi - 1]}")
                    view = view[got:]
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.file_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.file_shape)

    def take(self, rows: np.ndarray, axis: int = 0) -> LazyRows:
        """Some of the rows (as ``ndarray.take(rows, axis=0)``)."""
        assert axis == 0
        out = copy.copy(self)
        out.rows = self.rows[rows]
        return out


class NpyRows:
    """An ``.npy`` file of a declared ``shape`` written a block of rows at a time; ``close()`` checks every row came
    and renames it into place, ``abort()`` removes it. ``np.load(path, mmap_mode='r')`` reads it back."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(int(s) for s in shape), np.dtype(dtype)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.rows = 0
        self.fh = open(self.tmp, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.fh, header)

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: block {block.shape} does not fit {self.shape} after {self.rows} rows")
        self.fh.write(block.data)
        self.rows += len(block)

    def close(self) -> None:
        self.fh.close()
        if self.rows != self.shape[0]:
            self.abort()
            raise ValueError(f"{self.path.name}: {self.rows} rows written of {self.shape[0]}")
        self.tmp.replace(self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


class CsvRows:
    """A CSV written a table at a time (the header with the first), renamed into place by ``close()``."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = Path(path), list(columns)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        pd.DataFrame(columns=self.columns).to_csv(self.tmp, index=False)

    def write(self, table: pd.DataFrame) -> None:
        if len(table):
            table[self.columns].to_csv(self.tmp, mode="a", header=False, index=False)

    def close(self) -> None:
        self.tmp.replace(self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


class ClassMeans:
    """Per-class means accumulated over blocks of rows (float64 sums): ``result()`` equals
    ``shared.evaluation.rankings.class_means`` of all the rows at once (NaN where a class has no row)."""

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(n_classes, dtype=np.int64)

    def add(self, values: np.ndarray, labels: np.ndarray) -> None:
        values = np.asarray(values)
        if self.sums is None:
            self.sums = np.zeros((self.n_classes, *values.shape[1:]), dtype=np.float64)
        for c in np.unique(labels):
            rows = labels == c
            self.sums[c] += values[rows].sum(axis=0, dtype=np.float64)
            self.counts[c] += int(rows.sum())

    def result(self) -> np.ndarray:
        out = np.full(self.sums.shape, np.nan)
        seen = self.counts > 0
        out[seen] = self.sums[seen] / self.counts[seen].reshape(-1, *([1] * (self.sums.ndim - 1)))
        return out


class KeptRows:
    """The rows of a larger result that later steps read (the trust checks' and the figures' samples): filled block
    by block as the result is computed, then ``kept[rows]`` returns them by their row number in the whole."""

    def __init__(self, rows: np.ndarray):
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.values: np.ndarray | None = None

    def offer(self, start: int, block: np.ndarray) -> None:
        if self.values is None:
            self.values = np.empty((len(self.rows), *block.shape[1:]), dtype=block.dtype)
        lo, hi = np.searchsorted(self.rows, [start, start + len(block)])
        self.values[lo:hi] = block[self.rows[lo:hi] - start]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.searchsorted(self.rows, rows)
        if (pos >= len(self.rows)).any() or (self.rows[np.minimum(pos, len(self.rows) - 1)] != rows).any():
            raise KeyError("rows that were not kept")
        return self.values[pos]


class AnnDataFile:
    """An ``.h5ad`` written in parts, for scanpy: ``start`` writes obs and var (anndata's own writer), ``dense`` adds
    X or a layer as an HDF5 dataset filled a block of rows at a time (anndata's dense-array encoding), ``add_obs``
    joins obs columns computed later, ``finish``
    writes varm and uns (``anndata``'s ``write_elem``) and renames the file into place."""

    def __init__(self, path: Path, obs: pd.DataFrame, var: pd.DataFrame):
        import anndata as ad
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ad.AnnData(obs=obs, var=var).write_h5ad(self.tmp)
        self.file = h5py.File(self.tmp, "a")
        self.n_obs, self.n_vars = len(obs), len(var)

    def dense(self, key: str, dtype) -> _Dataset:
        """key: 'X' or 'layers/<name>'."""
        rows = max(1, min(self.n_obs, (1 << 20) // max(1, self.n_vars * np.dtype(dtype).itemsize)))
        ds = self.file.create_dataset(
            key, shape=(self.n_obs, self.n_vars), dtype=dtype, chunks=(rows, self.n_vars) if self.n_obs else None
        )
        ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
        return _Dataset(ds)

    def add_obs(self, columns: pd.DataFrame) -> None:
        """Columns added to obs after ``start`` (indexed by obs's index, in its order): obs read back with anndata's
        reader, the columns joined, and obs written again with anndata's encoding (text, numbers, nullable
        booleans and integers as ``anndata.read_h5ad`` reads them)."""
        try:
            from anndata.io import read_elem  # anndata >= 0.11
        except ImportError:
            from anndata.experimental import read_elem
        obs = read_elem(self.file["obs"])
        if not columns.index.astype(str).equals(obs.index.astype(str)):
            raise ValueError(f"{self.path.name}: obs columns for other samples than obs's")
        for name in columns.columns:
            obs[name] = columns[name].array  # its dtype kept (nullable booleans and integers)
        del self.file["obs"]
        _write_elem()(self.file, "obs", obs)

    def finish(self, elems: dict) -> None:
        """elems: {key: value} written with anndata's encoding (e.g. 'varm': {...}, 'uns': {...})."""
        write_elem = _write_elem()
        for key, value in elems.items():
            if key in self.file:
                del self.file[key]
            write_elem(self.file, key, value)
        self.file.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _Dataset:
    def __init__(self, ds):
        self.ds, self.rows = ds, 0

    def write(self, block: np.ndarray) -> None:
        self.ds[self.rows : self.rows + len(block)] = np.asarray(block, dtype=self.ds.dtype)
        self.rows += len(block)


def _write_elem():
    try:
        from anndata.io import write_elem  # anndata >= 0.11
    except ImportError:
        from anndata.experimental import write_elem
    return write_elem


# ------------------------------------------------------------------------------ attributions.h5ad, for scanpy
def open_anndata(
    path: Path, data: ModelInputs, classes: list[str], settings: Explain, conformal: pd.DataFrame | None = None
) -> AnnDataFile:
    """attributions.h5ad begun: obs the explained samples (label, prediction, p_true_class, correct, split, and with
    the trainer's ``test_conformal.csv`` given as ``conformal``: conformal_set, the classes of the sample's conformal
    prediction set joined by '|', '' for an empty set, and conformal_set_size), var the genes (and their symbols), X
    the gene values as the model saw them (vectors; for images the values they were rendered from), written a chunk
    of samples at a time; each method then adds its layer (``explain_method``)."""
    proba = data.proba
    obs = pd.DataFrame(
        {
            "label": pd.Categorical(np.asarray(classes)[data.labels], categories=classes),
            "prediction": pd.Categorical(np.asarray(classes)[proba.argmax(1)], categories=classes),
            "p_true_class": proba[np.arange(len(proba)), data.labels],
            "correct": proba.argmax(1) == data.labels,
            "split": "test",
        },
        index=pd.Index(data.samples["sample"].astype(str).to_numpy(), name="sample"),
    )
    if conformal is not None:
        by_sample = conformal.assign(sample=conformal["sample"].astype(str)).set_index("sample")
        found = obs.index.isin(by_sample.index)
        if not found.all():  # a trainer's table of other samples: say nothing rather than something wrong
            log.warning("conformal sets: %d explained samples not in test_conformal.csv; left out", (~found).sum())
        else:
            obs["conformal_set"] = by_sample["set"].reindex(obs.index).fillna("").astype(str).to_numpy()
            obs["conformal_set_size"] = by_sample["set_size"].reindex(obs.index).to_numpy(np.int64)
    var = pd.DataFrame(index=pd.Index(np.asarray(data.gene_names).astype(str), name="gene"))
    if data.genes_table is not None and "symbol" in data.genes_table:
        var["symbol"] = data.genes_table["symbol"].astype(str).to_numpy()
    h5ad = AnnDataFile(path, obs, var)
    try:
        values = data.array if data.kind == "vector" else data.gene_values
        if values is not None:
            x = h5ad.dense("X", np.float32)
            scale = data.scale if data.kind == "vector" else 1.0
            for start in range(0, len(data.labels), settings.chunk_size):
                x.write(np.asarray(values[start : start + settings.chunk_size], dtype=np.float32) * np.float32(scale))
    except BaseException:
        h5ad.abort()
        raise
    return h5ad


def finish_anndata(
    h5ad: AnnDataFile,
    gene_names,
    classes: list[str],
    gene_means: dict[str, np.ndarray],
    entry: dict,
    settings: Explain,
    de: dict | None = None,
    tables: dict | None = None,
) -> None:
    """attributions.h5ad completed, for scanpy: varm the class means of each method's layer, uns the top genes, the
    trust figures, the shortcut audit and the layout-sensitivity check (JSON); with the biology checks,
    uns['rank_genes_groups'] (Wilcoxon, training split; scanpy's own layout, so sc.pl.rank_genes_groups and
    sc.get.rank_genes_groups_df read it), uns['rank_genes_groups_t-test'] and uns['biology'] (the tables)."""
    varm = {f"{m}_class_means": g.T.astype(np.float32) for m, g in gene_means.items()}
    genes = np.asarray(gene_names).astype(str)
    uns: dict = {
        "top_genes": {
            m: {
                c: genes[
                    np.argsort(-np.nan_to_num(varm[f"{m}_class_means"][:, k], nan=-np.inf), kind="stable")[
                        : settings.top_k
                    ]
                ]
                for k, c in enumerate(classes)
            }
            for m in gene_means
        }
    }
    uns["classes"] = list(classes)
    uns["methods"] = {
        m: {k: v for k, v in r.items() if k in ("signed", "description", "layer")} for m, r in entry["methods"].items()
    }
    uns["trust"] = json.dumps(
        {m: {k: r[k] for k in ("faithfulness", "sanity", "stability") if k in r} for m, r in entry["methods"].items()},
        default=float,
    )
    if entry.get("shortcuts") is not None:  # the shortcut audit, as explain's metrics.json holds it
        uns["shortcuts"] = json.dumps(entry["shortcuts"], default=float)
    if entry.get("sample_trust") is not None:  # the per-sample trust summary (its columns are in obs)
        uns["sample_trust"] = json.dumps(entry["sample_trust"], default=float)
    if entry.get("layout_sensitivity") is not None:  # the layout-sensitivity check, as metrics.json holds it
        uns["layout_sensitivity"] = json.dumps(entry["layout_sensitivity"], default=float)
    uns["config"] = json.dumps(settings.model_dump(mode="json"))
    for result in (de or {}).values():
        uns[result["key"]] = result["uns"]
    if tables:
        uns["biology"] = {k: t.astype({c: str for c in t.columns if t[c].dtype == object}) for k, t in tables.items()}
    h5ad.finish({"varm": varm, "uns": uns})
