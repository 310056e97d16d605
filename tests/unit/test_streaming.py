"""The streamed matrix reader (pyarrow, block by block, float32) gives exactly pandas.read_csv's values on every
published layout the loaders read, in blocks as small as a few rows, and keeps only the columns/rows asked for."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from shared.errors import UserError
from stages.preprocess import streaming
from stages.preprocess.formats import tables
from stages.preprocess.textfiles import compression

GENES = [f"ENSG{i:011d}.{i % 7 + 1}" for i in range(23)]
SAMPLES = [f"GTEX-{i:04X}-0011-R{i % 9}a-SM-{i:05d}" for i in range(9)]


def _values(rng, shape, missing=False) -> np.ndarray:
    """Cells as text in the number forms published matrices hold: counts, long decimals, exponents, rounded."""
    forms = [lambda x: str(int(x)), lambda x: f"{x:.17g}", lambda x: f"{x:.6e}", lambda x: f"{x:.3f}", repr]
    flat = [forms[k % len(forms)](float(x)) for k, x in enumerate(rng.lognormal(1, 4, size=int(np.prod(shape))))]
    if missing:
        flat[5], flat[11] = "NA", ""
    return np.array(flat, dtype=object).reshape(shape)


def _write(path, lines: list[str], gz: bool) -> str:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return str(path)


def _layouts(tmp_path, rng, gz: bool, missing=False):
    """(name, file, MatrixFile fields, pandas.read_csv kwargs, number of id columns) per published layout."""
    v = _values(rng, (len(GENES), len(SAMPLES)), missing)

    def rows(sep, lead=lambda i: [GENES[i]]):
        return [sep.join([*lead(i), *map(str, v[i])]) for i in range(len(GENES))]

    out = []
    # plain csv, genes x samples, corner header 'gene'
    out.append(
        (
            "csv",
            _write(tmp_path / f"m{gz}.csv", [",".join(["gene", *SAMPLES]), *rows(",")], gz),
            dict(default_sep=","),
            dict(sep=",", skiprows=1),
            1,
        )
    )
    # R write.table: no corner field in the header, tab separated
    out.append(
        (
            "r_table",
            _write(tmp_path / f"r{gz}.tsv", ["\t".join(SAMPLES), *rows("\t")], gz),
            dict(default_sep="\t"),
            dict(sep="\t", skiprows=1),
            1,
        )
    )
    # GTEx v8 all-tissue GCT: #1.2, dimensions, Name Description header
    gct = [
        "#1.2",
        f"{len(GENES)}\t{len(SAMPLES)}",
        "\t".join(["Name", "Description", *SAMPLES]),
        *rows("\t", lambda i: [GENES[i], f"SYM{i}"]),
    ]
    out.append(
        (
            "gct",
            _write(tmp_path / f"a{gz}.gct", gct, gz),
            dict(sep="\t", skiprows=2, n_id_columns=2),
            dict(sep="\t", skiprows=3),
            2,
        )
    )
    # GTEx v8 per-tissue GCT: a leading id column
    tissue = [
        "#1.2",
        f"{len(GENES)}\t{len(SAMPLES)}",
        "\t".join(["id", "Name", "Description", *SAMPLES]),
        *rows("\t", lambda i: [str(i), GENES[i], f"SYM{i}"]),
    ]
    out.append(
        (
            "gct_tissue",
            _write(tmp_path / f"t{gz}.gct", tissue, gz),
            dict(sep="\t", skiprows=2, n_id_columns=3, first_id=1),
            dict(sep="\t", skiprows=3),
            3,
        )
    )
    # TCGA pan-cancer: gene_id 'SYMBOL|entrez', tab separated
    tcga = ["\t".join(["gene_id", *SAMPLES]), *rows("\t", lambda i: [f"SYM{i}|{1000 + i}"])]
    out.append(
        ("tcga", _write(tmp_path / f"p{gz}.tsv", tcga, gz), dict(default_sep="\t"), dict(sep="\t", skiprows=1), 1)
    )
    # GEO series matrix data table: quoted ids, then the end marker
    geo = [
        '!Series_title\t"x"',
        "!series_matrix_table_begin",
        "\t".join(['"ID_REF"', *[f'"{s}"' for s in SAMPLES]]),
        *rows("\t", lambda i: [f'"{GENES[i]}"']),
        "!series_matrix_table_end",
    ]
    out.append(
        (
            "geo",
            _write(tmp_path / f"g{gz}.txt", geo, gz),
            dict(sep="\t", skiprows=2, nrows=len(GENES)),
            dict(sep="\t", skiprows=3, nrows=len(GENES)),
            1,
        )
    )
    return out


def _pandas(path, kw, n_id) -> np.ndarray:
    frame = pd.read_csv(path, header=None, dtype=str, compression=compression(path), **kw)
    return frame.iloc[:, n_id:].astype(np.float32).to_numpy()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("block", [None, 256])
def test_streamed_values_equal_pandas_on_every_layout(tmp_path, monkeypatch, gz, block):
    if block:
        monkeypatch.setattr(streaming, "BLOCK_BYTES", block)  # a few rows per block: many blocks
    for name, path, kw, pandas_kw, n_id in _layouts(tmp_path, np.random.default_rng(0), gz):
        for transpose in (False, True):
            table = tables.read_matrix(tables.MatrixFile(path, **kw), True, transpose=transpose)
            expected = (
                pd.read_csv(
                    path,
                    header=None,
                    dtype={j: np.float32 for j in range(n_id, n_id + len(SAMPLES))},
                    compression=compression(path),
                    **pandas_kw,
                )
                .iloc[:, n_id:]
                .to_numpy()
            )
            assert table.values.dtype == np.float32 and table.values.shape == expected.shape, name
            np.testing.assert_array_equal(table.values, expected, err_msg=name)
            np.testing.assert_array_equal(table.values, _pandas(path, pandas_kw, n_id), err_msg=name)
            assert table.row_ids == GENES or name == "tcga", name
            assert table.col_ids == SAMPLES, name
            if transpose:  # samples x genes without a copy
                assert table.values.T.flags.c_contiguous, name


def test_kept_columns_and_rows_only(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 300)
    (_, path, kw, pandas_kw, n_id), *_ = _layouts(tmp_path, np.random.default_rng(1), True)
    full = _pandas(path, pandas_kw, n_id)
    keep_s = set(SAMPLES[::2])
    keep_g = set(GENES[1::3])
    table = tables.read_matrix(
        tables.MatrixFile(path, **kw),
        True,
        keep_column=keep_s.__contains__,
        keep_row=keep_g.__contains__,
        transpose=True,
    )
    assert table.col_ids == SAMPLES[::2] and table.row_ids == GENES[1::3]
    np.testing.assert_array_equal(table.values, full[1::3][:, ::2])
    assert table.left_out == len(SAMPLES[1::2]) + (len(GENES) - len(GENES[1::3]))


def test_missing_values_as_pandas_or_refused(tmp_path):
    for name, path, kw, pandas_kw, n_id in _layouts(tmp_path, np.random.default_rng(2), False, missing=True):
        table = tables.read_matrix(tables.MatrixFile(path, **kw), True, missing_ok=True)
        expected = _pandas(path, pandas_kw, n_id)
        assert np.isnan(expected).sum() == 2, name
        np.testing.assert_array_equal(table.values, expected, err_msg=name)  # NaN where pandas has NaN
        with pytest.raises(UserError, match="NaN") as err:
            tables.read_matrix(tables.MatrixFile(path, **kw), True)
        assert path in str(err.value) and "\n" not in str(err.value)


def test_a_non_numeric_cell_is_named_with_its_row_and_column(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 128)
    lines = [",".join(["gene", *SAMPLES])] + [",".join([g, *["1"] * len(SAMPLES)]) for g in GENES]
    lines[15] = ",".join([GENES[14], "1", "1", "1.2.3", *["1"] * (len(SAMPLES) - 3)])
    path = _write(tmp_path / "bad.csv.gz", lines, True)
    with pytest.raises(UserError) as err:
        tables.read_matrix(tables.MatrixFile(path), True)
    message = str(err.value)
    assert "'1.2.3'" in message and repr(GENES[14]) in message and repr(SAMPLES[2]) in message and "line 16" in message


def test_a_ragged_row_is_a_one_line_error(tmp_path):
    lines = [",".join(["gene", *SAMPLES])] + [",".join([g, *["1"] * len(SAMPLES)]) for g in GENES]
    lines[7] += ",9"
    path = _write(tmp_path / "ragged.csv", lines, False)
    with pytest.raises(UserError, match="malformed") as err:
        tables.read_matrix(tables.MatrixFile(path), True)
    assert path in str(err.value) and "\n" not in str(err.value)
