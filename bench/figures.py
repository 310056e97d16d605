"""What each benchmark's ``headline(result)`` returns: the rows of its table on the docs site's Benchmarks page.

Each ``bench/<name>.py`` declares ``WHAT`` (what is measured, on what), ``REFERENCE`` (what ours is set beside) and
``headline(result) -> list[dict]``, which reads the JSON it wrote (``outputs/bench/<name>.json``) and returns rows
``{measure, ours, reference, ratio, bar}`` (keys without a value left out). ``python -m shared.docs record-bench``
keeps them in docs/data/benchmarks.yaml; the page renders that file, so re-measuring rewrites data, never prose.
"""

from __future__ import annotations

from typing import Any


def row(measure: str, ours: Any = None, reference: Any = None, ratio: Any = None, bar: Any = None) -> dict:
    """One table row; the cells with no value are left out."""
    cells = {"measure": measure, "ours": ours, "reference": reference, "ratio": ratio, "bar": bar}
    return {k: v for k, v in cells.items() if v is not None}


def faster(speedup: float, digits: int = 1) -> str:
    """``their time / ours`` in words: ``4.2x faster`` or ``1.1x slower``."""
    if speedup >= 1:
        return f"{speedup:.{digits}f}x faster"
    return f"{1 / speedup:.{digits}f}x slower"


def gib(n_bytes: float, digits: int = 2) -> float:
    return round(n_bytes / 2**30, digits)


def count(n: int | str) -> str:
    """A count as the page writes it: 10000 -> 10,000."""
    return f"{int(n):,}"
