"""Delimited expression matrices parsed in blocks by pyarrow's streaming CSV reader, straight to float32.

A GTEx all-tissue matrix is 56,200 genes x 17,382 samples (about 3.9 GB as float32, several times that as text
or as pandas' float64 intermediates). ``stream_matrix`` reads such a file (plain or gzip) one block of rows at a
time (``pyarrow.csv.open_csv``), converts only the columns it is asked to keep (a column left out is tokenised
but never converted or stored), turns each block into a float32 array at once (the block's float64 parse is the
only wider copy, one block at a time: parsing to float64 and then rounding gives exactly pandas' float32 values),
checks it, and assembles the matrix in the orientation the caller wants: the blocks are copied into an
uninitialised array and freed one by one, so the peak stays near one copy of the kept matrix plus a block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from shared.errors import UserError

from .textfiles import compression, head, reading

#: pandas.read_csv's default missing-value markers (pandas._libs.parsers.STR_NA_VALUES), so that a cell counts as
#: missing exactly when pandas would say so
NA_VALUES = [
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
]
#: text per parsed block (~500 GTEx genes x 2,000 samples); measured fastest between 1 and 16 MB, larger blocks
#: leave the CPU caches
BLOCK_BYTES = 4 << 20


class Streamed(NamedTuple):
    """values: (n_rows, n_kept) float32, an F-ordered view of a C-ordered (n_kept, n_rows) array when
    ``transpose`` was asked (so that ``values.T`` costs no copy); row ids and the info column as read."""

    values: np.ndarray
    row_ids: list[str]
    row_info: list[str] | None
    rows_left_out: int  # by keep_row


@dataclass(frozen=True)
class MatrixSource:
    """The data rows of a delimited matrix file (plain or gzip), as ``stream_matrix`` reads them: they start after
    ``skiprows`` lines (the header is read by the caller) and have ``n_columns`` fields separated by ``sep``; column
    ``id_column`` holds the row id and ``info_column`` a second annotation. ``nrows``: stop after that many rows (a
    GEO series matrix's table is followed by an end marker, skipped). ``expected_rows``: the number of rows the file
    declares, when it does (the blocks then go straight into the result)."""

    path: str | Path
    sep: str
    skiprows: int
    n_columns: int
    id_column: int
    info_column: int | None = None
    nrows: int | None = None
    expected_rows: int | None = None


def stream_matrix(
    source: MatrixSource,
    value_columns: list[int],
    transpose: bool,
    keep_row: Callable[[str], bool] | None = None,
    check: Callable[[np.ndarray, list[str], list[int]], None] | None = None,
    block_bytes: int | None = None,
) -> Streamed:
    """The data rows of ``source``; only ``value_columns`` (positions, in file order) are converted, as numbers.

    ``keep_row(id)``: rows for which it is false are dropped as they are read. ``check(block, row_ids,
    value_columns)`` sees each block (float32, rows x kept columns) before it is stored. A non-numeric cell raises
    ``NonNumeric``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path, sep, skiprows = source.path, source.sep, source.skiprows
    n_columns, id_column, info_column = source.n_columns, source.id_column, source.info_column
    nrows, expected_rows = source.nrows, source.expected_rows

    names = [f"c{i}" for i in range(n_columns)]
    id_names = [names[id_column]] + ([names[info_column]] if info_column is not None else [])
    types = {n: pa.string() for n in id_names} | {names[i]: pa.float64() for i in value_columns}
    # pyarrow needs the skipped lines (and any one row) inside its first block: never smaller than those
    lines = head(path, skiprows + 1)
    least = 2 * sum(len(line.encode()) + 1 for line in lines) + 1024
    read = pacsv.ReadOptions(
        skip_rows=skiprows, column_names=names, block_size=max(block_bytes or BLOCK_BYTES, least), use_threads=True
    )
    parse = pacsv.ParseOptions(delimiter=sep, invalid_row_handler=_end_marker if nrows is not None else None)
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=id_names + [names[i] for i in value_columns],
        null_values=NA_VALUES,
        strings_can_be_null=False,
    )
    blocks: list[np.ndarray] = []
    direct = None
    if expected_rows is not None and keep_row is None:
        direct = np.empty(
            (len(value_columns), expected_rows) if transpose else (expected_rows, len(value_columns)), dtype=np.float32
        )
    row_ids: list[str] = []
    row_info: list[str] | None = [] if info_column is not None else None
    left_out = 0
    # Every Arrow allocation of the read (the reader's blocks, to_tensor's arrays) from the system allocator, whose
    # freed pages release_freed_memory hands back: the default pool (mimalloc) kept ~130 MB of freed blocks.
    pool, previous = pa.system_memory_pool(), pa.default_memory_pool()
    pa.set_memory_pool(pool)
    with reading(path, "the matrix"):
        try:
            stream = pa.input_stream(str(path), compression=compression(path))
            reader = pacsv.open_csv(
                stream, read_options=read, parse_options=parse, convert_options=convert, memory_pool=pool
            )
            for batch in reader:
                if nrows is not None and len(row_ids) + batch.num_rows > nrows:
                    batch = batch.slice(0, nrows - len(row_ids))
                ids = batch.column(0).to_pylist()
                info = batch.column(1).to_pylist() if info_column is not None else None
                values = batch.select(range(len(id_names), batch.num_columns))
                if keep_row is not None:
                    mask = np.fromiter((keep_row(r) for r in ids), dtype=bool, count=len(ids))
                    if not mask.all():
                        left_out += int((~mask).sum())
                        where = np.flatnonzero(mask)
                        ids = [ids[k] for k in where]
                        info = [info[k] for k in where] if info is not None else None
                        values = values.take(pa.array(where))
                # one call for the whole block: (rows, columns) float64 in column-major order, nulls as NaN; its
                # transpose is then (columns, rows) C-ordered, rounded once to float32
                block = np.asarray(values.to_tensor(null_to_nan=True, row_major=False)).T.astype(np.float32)
                if check is not None:
                    check(block.T, ids, value_columns)
                start, stop = len(row_ids), len(row_ids) + len(ids)
                if direct is not None and stop <= expected_rows:
                    if transpose:
                        direct[:, start:stop] = block
                    else:
                        direct[start:stop] = block.T
                else:
                    if direct is not None:  # more rows than declared: keep what was written as a block
                        blocks.append(direct[:, :start].copy() if transpose else direct[:start].T.copy())
                        direct = None
                    blocks.append(block if transpose else np.ascontiguousarray(block.T))
                row_ids += ids
                if info is not None:
                    row_info += info
                del batch, values, block
                release_freed_memory()
                if nrows is not None and len(row_ids) >= nrows:
                    break
        except pa.ArrowInvalid as exc:
            raise _arrow_error(path, exc) from None
        finally:
            pa.set_memory_pool(previous)
    if direct is not None:
        n = len(row_ids)
        values = direct if n == expected_rows else (direct[:, :n].copy() if transpose else direct[:n].copy())
        return Streamed(values.T if transpose else values, row_ids, row_info, left_out)
    return Streamed(_assemble(blocks, len(row_ids), len(value_columns), transpose), row_ids, row_info, left_out)


class NonNumeric(Exception):
    """A value column holds a cell that is not a number (``column``: its position in the file)."""

    def __init__(self, column: int):
        super().__init__(column)
        self.column = column


def _end_marker(row) -> str:
    """Skip a short line after the table (a GEO series matrix's !series_matrix_table_end); stop on any other."""
    return "skip" if row.text.startswith("!") else "error"


def _arrow_error(path, exc: Exception) -> Exception:
    message = str(exc).splitlines()[0]
    if "conversion error" in message and "In CSV column #" in message:
        position = int(message.split("In CSV column #", 1)[1].split(":", 1)[0])  # the file's column
        return NonNumeric(position)
    if "Expected" in message and "columns" in message:
        return UserError(
            f"{path}: the matrix is malformed ({message[:160]}); every row must have as many fields as "
            "the header (check the separator and the quoting)"
        )
    return UserError(f"{path}: cannot parse the matrix ({message[:160]})")


def _assemble(blocks: list[np.ndarray], n_rows: int, n_kept: int, transpose: bool) -> np.ndarray:
    """The blocks, in order, as one (n_rows, n_kept) float32 array (a view of (n_kept, n_rows) if ``transpose``).

    The result is allocated uninitialised (its pages are only mapped as they are written) and each block is freed
    as soon as it is copied, so the peak stays near one copy of the matrix plus a block.
    """
    out = np.empty((n_kept, n_rows) if transpose else (n_rows, n_kept), dtype=np.float32)
    start = 0
    while blocks:
        block = blocks.pop(0)
        stop = start + block.shape[1 if transpose else 0]
        if transpose:
            out[:, start:stop] = block
        else:
            out[start:stop] = block
        start = stop
        del block
        release_freed_memory()
    return out.T if transpose else out


_LIBC = None


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). A freed block of a
    few MB otherwise stays in the process's heap (glibc raises its mmap threshold after the first large free), and
    the blocks freed while the result fills would still count towards the peak."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018  (raises AttributeError on a libc without it)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
