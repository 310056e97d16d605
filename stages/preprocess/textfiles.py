"""Plain or gzip text tables, read safely: the helpers every reader of ``stages.preprocess`` shares.

A damaged, truncated or foreign file becomes a one-line ``UserError`` naming it (``reading``); compression is
recognised by content, not by name.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from contextlib import contextmanager

import pandas as pd

from shared.errors import UserError, first_line


@contextmanager
def reading(path, what: str):
    """Turn the errors of a damaged, truncated or foreign file into one-line UserErrors naming it."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: {what} is empty") from None
    except pd.errors.ParserError as exc:
        raise UserError(
            f"{path}: {what} is malformed ({first_line(exc)}); check the separator and the quoting"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: {what} is not a text (or gzip) table; check the path") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(
            f"{path}: {what} is a damaged or truncated gzip file ({first_line(exc)}); download or copy it again"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({type(exc).__name__}: {first_line(exc)})") from None


def compression(path) -> str | None:
    """'gzip' when the file starts with the gzip magic bytes, whatever its name; else None (plain text)."""
    with reading(path, "the file"), open(path, "rb") as fh:
        return "gzip" if fh.read(2) == b"\x1f\x8b" else None


def open_text(path, errors: str = "strict"):
    """A plain or gzip text file (recognised by content) opened for reading lines, line endings kept."""
    opener = gzip.open if compression(path) == "gzip" else open
    return opener(path, "rt", encoding="utf-8", newline="", errors=errors)


def head(path, n: int) -> list[str]:
    """The first ``n`` lines of a plain or gzip text file, without line endings."""
    lines = []
    with reading(path, "the file"), open_text(path) as fh:
        for line in fh:
            lines.append(line.rstrip("\r\n"))
            if len(lines) == n:
                break
    return lines


def default_sep(path) -> str:
    """',' for a *.csv[.gz] name, else tab (GTEx and TCGA tables are tab separated, whatever their extension)."""
    name = str(path).lower().removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def sniff_sep(line: str, default: str) -> str:
    """``default`` unless the header line has none of it but has the other one of comma and tab."""
    other = "\t" if default == "," else ","
    return other if default not in line and other in line else default


def split(line: str, sep: str) -> list[str]:
    """One delimited line -> its fields (quotes handled as pandas does)."""
    return next(csv.reader([line], delimiter=sep))


__all__ = ["compression", "default_sep", "first_line", "head", "open_text", "reading", "sniff_sep", "split"]
