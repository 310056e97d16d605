"""Logging and progress bars, configured the same way in every stage."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def setup_logging(level: str | int | None = None) -> None:
    level = level or os.environ.get("ONCOXAI_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr, force=True)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; silent in logs and CI (``ONCOXAI_PROGRESS=1`` forces it)."""
    from tqdm.auto import tqdm

    forced = os.environ.get("ONCOXAI_PROGRESS")
    disable = None if forced is None else forced == "0"
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False, file=sys.stderr))
